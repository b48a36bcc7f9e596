"""The dev server's exceptions.

``DevServerError``
    ``ConfigError``    a setting is invalid (raised before anything starts)
    ``AuthError``      a token or grant was refused; carries the HTTP status and a message
                       meant for the client (``/rtc/validate`` returns it verbatim)
    ``TwirpError``     a RoomService call failed; carries the Twirp error code
"""

from __future__ import annotations

from typing import ClassVar


class DevServerError(Exception):
    """Base of every error the dev server raises on purpose."""


class ConfigError(DevServerError):
    """A configuration value is invalid."""


class AuthError(DevServerError):
    """The request's token or grants do not allow what it asks for."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class TwirpError(DevServerError):
    """A Twirp error response: ``{"code": code, "msg": message}`` with an HTTP status."""

    _STATUS: ClassVar[dict[str, int]] = {
        "invalid_argument": 400,
        "malformed": 400,
        "unauthenticated": 401,
        "permission_denied": 403,
        "not_found": 404,
        "already_exists": 409,
        "bad_route": 404,
        "unimplemented": 501,
        "internal": 500,
    }

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def status(self) -> int:
        return self._STATUS.get(self.code, 500)
