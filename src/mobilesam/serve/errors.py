"""The one error type the service raises for requests it refuses."""

from __future__ import annotations


class ServeError(Exception):
    """A request the service refuses; becomes ``{"error": code, "detail": message}``.

    ``status`` is the HTTP status (4xx: the input is at fault; 503: the service
    is busy, try again after ``retry_after`` seconds), ``code`` a short
    machine-readable name such as ``unknown_image``, ``message`` the text for people.
    """

    def __init__(
        self, status: int, code: str, message: str, *, retry_after: int | None = None
    ) -> None:
        super().__init__(message)
        self.status = int(status)
        self.code = code
        self.message = message
        self.retry_after = retry_after

    @property
    def headers(self) -> dict[str, str]:
        """HTTP headers of the answer: ``Retry-After`` for a busy service."""
        return {} if self.retry_after is None else {"Retry-After": str(int(self.retry_after))}

    def to_json(self) -> dict[str, str]:
        return {"error": self.code, "detail": self.message}
