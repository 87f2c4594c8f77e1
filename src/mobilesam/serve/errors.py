"""The one error type the service raises for requests it refuses."""

from __future__ import annotations


class ServeError(Exception):
    """A request the service refuses; becomes ``{"error": code, "detail": message}``.

    ``status`` is the HTTP status (4xx: the input is at fault), ``code`` a short
    machine-readable name such as ``unknown_image``, ``message`` the text for people.
    """

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = int(status)
        self.code = code
        self.message = message

    def to_json(self) -> dict[str, str]:
        return {"error": self.code, "detail": self.message}
