"""ERMrest-style HTTP errors: ``text/plain`` ``<Description>[ Detail: msg]\\n`` (protocol §3.12)."""

from __future__ import annotations


class ErmrestError(Exception):
    """An error with an HTTP status; the body format follows webauthn2's RestException."""

    status = 500
    description = "Internal server error."

    def __init__(self, *args: str) -> None:
        # ErmrestError(detail) or ErmrestError(description, detail)
        if len(args) >= 2:
            self.description, self.detail = args[0], args[1]
        elif len(args) == 1:
            self.detail = args[0]
        else:
            self.detail = None
        super().__init__(self.body().strip())

    def body(self) -> str:
        if self.detail:
            return f"{self.description} Detail: {self.detail}\n"
        return f"{self.description}\n"


class BadRequest(ErmrestError):
    status = 400
    description = "Request malformed."


class Unauthorized(ErmrestError):
    status = 401
    description = "Access requires authentication."


class Forbidden(ErmrestError):
    status = 403
    description = "Access forbidden."


class NotFound(ErmrestError):
    status = 404
    description = "Resource not found."


class MethodNotAllowed(ErmrestError):
    status = 405
    description = "Request method not allowed on this resource."


class Conflict(ErmrestError):
    status = 409
    description = "Request conflicts with state of server."


class PayloadTooLarge(ErmrestError):
    status = 413
    description = "Request entity too large."


class UnsupportedMediaType(ErmrestError):
    status = 415
    description = "The request input type is not supported."
