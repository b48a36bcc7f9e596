"""Errors of the HTTP API and the one JSON body every error response carries.

Every failure a client can see is an :class:`ApiError` with a stable ``code`` and an HTTP
``status``; the :func:`error_middleware` turns it, and everything else that can go wrong while
serving a request, into::

    {"error": {"code": "<code>", "message": "<human readable>"}}

The tree::

    ApiError
    +-- BadRequest            400 bad_request, invalid_json, space_required, user_required,
    |                             unsupported_language, unknown_model
    +-- Unauthorized          401 unauthorized
    +-- Forbidden             403 forbidden, reserved_identity
    +-- NotFound              404 not_found
    +-- Conflict              409 conflict, session_not_active
    +-- UnsupportedMediaType  415 unsupported_media_type
    +-- ValidationFailed      422 validation_error
    +-- ExportTooLarge        422 export_too_large
    +-- LimitExceeded         429 session_track_limit, user_track_limit, quota_exceeded
    |   +-- RateLimited       429 rate_limited (with Retry-After)
    +-- ServiceUnavailable    503 unavailable, database_timeout, livekit_not_configured

aiohttp raises 405 ``method_not_allowed`` and 413 ``payload_too_large`` itself.

Storage errors (:mod:`core.errors`) map once, here: unavailable -> 503, not found -> 404,
invalid state -> 409 ``session_not_active``, a refused write -> 409, a limit -> 429 with the
limit's code (``session_track_limit``, ``user_track_limit``, ``quota_exceeded``), a statement
cancelled by the connection's ``statement_timeout`` -> 503 ``database_timeout`` (Retry-After).

Choices: a body that is not JSON is ``400 invalid_json``; JSON (or a query string) that parses but
breaks the schema is ``422 validation_error``; a well-formed speech setting the workers cannot
honour (a language Whisper does not know, a model outside ``ASR_MODELS``) is ``400``. aiohttp's
own 404/405/413 become the same body. Any other exception is answered ``500 internal_error`` and
logged without request data: the log line carries ``core.logs.error_fields`` (the exception's
types and where it was raised), never an exception's message (database drivers quote query
parameters there: search text, slugs, cursors).
"""

from __future__ import annotations

import logging
from typing import ClassVar

from aiohttp import web
from aiohttp.typedefs import Handler
from pydantic import ValidationError

from core import errors as storage
from core.logs import error_fields

logger = logging.getLogger("api")


class ApiError(Exception):
    """An error with an HTTP status and a stable machine-readable code."""

    status: ClassVar[int] = 500
    default_code: ClassVar[str] = "internal_error"

    def __init__(
        self, message: str, *, code: str | None = None, retry_after_s: int | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        # seconds after which a retry may succeed: the Retry-After header of the response
        self.retry_after_s = retry_after_s


class BadRequest(ApiError):
    status = 400
    default_code = "bad_request"


class Unauthorized(ApiError):
    status = 401
    default_code = "unauthorized"


class Forbidden(ApiError):
    status = 403
    default_code = "forbidden"


class NotFound(ApiError):
    status = 404
    default_code = "not_found"


class Conflict(ApiError):
    status = 409
    default_code = "conflict"


class UnsupportedMediaType(ApiError):
    status = 415
    default_code = "unsupported_media_type"


class ValidationFailed(ApiError):
    status = 422
    default_code = "validation_error"


class ExportTooLarge(ApiError):
    status = 422
    default_code = "export_too_large"


class LimitExceeded(ApiError):
    status = 429
    default_code = "limit_exceeded"


class RateLimited(LimitExceeded):
    """The caller made too many requests of one kind; ``retry_after_s`` says when to retry."""

    default_code = "rate_limited"


class ServiceUnavailable(ApiError):
    status = 503
    default_code = "unavailable"


def error_response(
    status: int, code: str, message: str, *, retry_after_s: int | None = None
) -> web.Response:
    response = web.json_response({"error": {"code": code, "message": message}}, status=status)
    if retry_after_s is not None:
        response.headers["Retry-After"] = str(max(int(retry_after_s), 1))
    return response


def api_error_response(exc: ApiError) -> web.Response:
    return error_response(exc.status, exc.code, exc.message, retry_after_s=exc.retry_after_s)


def validation_message(exc: ValidationError) -> str:
    """A short, input-free summary of a pydantic error: ``field: problem; ...``."""
    parts: list[str] = []
    for err in exc.errors(include_url=False, include_input=False)[:5]:
        loc = ".".join(str(p) for p in err["loc"]) or "body"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts) or "invalid input"


# Retry-After of a 503 database_timeout
DATABASE_RETRY_AFTER_S = 5

_LIMIT_CODES = {
    "session_tracks": "session_track_limit",
    "user_tracks": "user_track_limit",
    "monthly_quota": "quota_exceeded",
}


def from_storage(exc: storage.StorageError) -> ApiError:
    """The API error a storage error means to a client."""
    if isinstance(exc, storage.LimitExceeded):
        reason = exc.check.reason.value if exc.check.reason is not None else "limit"
        return LimitExceeded(limit_message(reason), code=limit_code(reason))
    if isinstance(exc, storage.NotFound):
        return NotFound("not found")
    if isinstance(exc, storage.InvalidState):
        return Conflict("the session has ended", code="session_not_active")
    if isinstance(exc, storage.ConflictError):
        return Conflict("the request conflicts with stored data")
    if isinstance(exc, storage.StatementTimeout):
        return ServiceUnavailable(
            "the database took too long to answer; try again later",
            code="database_timeout",
            retry_after_s=DATABASE_RETRY_AFTER_S,
        )
    return ServiceUnavailable("database unavailable")


def limit_code(reason: str) -> str:
    """The error code of a :class:`store.records.LimitReason` value."""
    return _LIMIT_CODES.get(reason, "limit_exceeded")


def limit_message(reason: str) -> str:
    return {
        "session_tracks": "the session transcribes its maximum number of tracks",
        "user_tracks": "the user's sessions transcribe their maximum number of tracks",
        "monthly_quota": "the space's monthly transcription minutes are used up",
    }.get(reason, "a transcription limit is reached")


# aiohttp's own HTTP exceptions (router misses, body too large, ...) -> our codes
_HTTP_CODES: dict[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


def _from_http_exception(exc: web.HTTPException) -> web.StreamResponse:
    if exc.status < 400:
        # redirects and the like pass through unchanged
        raise exc
    code = _HTTP_CODES.get(exc.status, "bad_request" if exc.status < 500 else "internal_error")
    message = exc.reason or code.replace("_", " ")
    if exc.status == 413:
        message = "request body too large"
    response = error_response(exc.status, code, message)
    if exc.status == 405:
        allow = exc.headers.get("Allow")
        if allow:
            response.headers["Allow"] = allow
    return response


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Outermost middleware: every failure becomes the JSON error body."""
    try:
        return await handler(request)
    except ApiError as exc:
        return api_error_response(exc)
    except storage.StorageError as exc:
        api_error = from_storage(exc)
        if api_error.status >= 500:
            logger.warning(
                "storage unavailable",
                extra={"route": _route_name(request), **error_fields(exc)},
            )
        return api_error_response(api_error)
    except ValidationError as exc:
        return error_response(422, "validation_error", validation_message(exc))
    except web.HTTPException as exc:
        return _from_http_exception(exc)
    except Exception as exc:
        # not logger.exception: the traceback's text ends with the message, and a driver's
        # message quotes the statement's parameters (request data)
        logger.error(
            "unhandled error while serving a request",
            extra={"method": request.method, "route": _route_name(request), **error_fields(exc)},
        )
        return error_response(500, "internal_error", "internal server error")


def _route_name(request: web.Request) -> str:
    info = request.match_info.route.resource
    return info.canonical if info is not None else "unmatched"
