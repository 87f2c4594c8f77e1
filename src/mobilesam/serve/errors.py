"""The one error type the service raises for bad requests and unavailable features."""

from __future__ import annotations


class ServeError(Exception):
    """A request the service refuses; becomes ``{"error": code, "detail": message}``.

    ``status`` is the HTTP status (4xx for bad input; 501/503 only for features
    or resources that are unavailable regardless of the input).
    """

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = int(status)
        self.code = code
        self.message = message

    def to_json(self) -> dict[str, str]:
        return {"error": self.code, "detail": self.message}
