"""The HTTP server around the app: a header-read timeout and a cap on open connections.

* **Header-read timeout** (``API_HEADER_TIMEOUT_SECONDS``): aiohttp's ``keepalive_timeout`` is
  armed when a connection opens and again after each response, and closes the connection if its
  next request's header has not fully arrived by then. So a client that opens a connection and
  trickles (or never sends) a header is cut after this many seconds, and so is an idle
  keep-alive connection. (aiohttp's default is 3630 s: a slow-header connection stayed open.)
  Behind a reverse proxy that keeps idle upstream connections longer, raise it above the
  proxy's idle timeout.
* **Connection cap** (``API_MAX_CONNECTIONS``): past that many open connections a new one is
  answered ``503`` with the JSON error body (``too_many_connections``, ``Retry-After: 1``) and
  closed, without reaching the app.
* Request lines and header fields are bounded by aiohttp (8190 bytes each, 128 headers: 400
  past them); bodies by ``API_MAX_BODY_BYTES``. Such protocol errors, answered by aiohttp
  before the app sees a request, get the JSON error body too (:class:`_JsonErrorHandler`),
  and aiohttp's log line about them names the error's types, not its message (which quotes
  the request line: search text, cursors). aiohttp's access log (full URL, query included) is
  off; ``api.access`` logs route templates only.
"""

from __future__ import annotations

import asyncio
import json
import logging

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from api.errors import error_response
from api.settings import ApiSettings
from core.logs import without_exception_messages

__all__ = ["GuardedSite", "make_runner"]


_PROTOCOL_CODES = {413: "payload_too_large", 431: "bad_request"}


class _JsonErrorHandler(RequestHandler):
    """aiohttp's connection handler, answering malformed requests (bad or too long request
    line, header or chunked body) with the API's JSON error body instead of text/plain."""

    __slots__ = ()

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        plain = super().handle_error(request, status, exc, message)  # logs, checks output
        if status >= 500:
            response = error_response(status, "internal_error", "internal server error")
        else:
            code = _PROTOCOL_CODES.get(status, "bad_request")
            response = error_response(status, code, "malformed HTTP request")
        del plain
        response.force_close()
        return response


def guard_logs() -> None:
    """aiohttp's server and web loggers log exceptions without their messages (idempotent)."""
    for name in ("aiohttp.server", "aiohttp.web"):
        target = logging.getLogger(name)
        if without_exception_messages not in target.filters:
            target.addFilter(without_exception_messages)


def make_runner(app: web.Application, settings: ApiSettings) -> web.AppRunner:
    """The app's runner with the header-read timeout; call ``await runner.setup()`` next."""
    guard_logs()
    return web.AppRunner(
        app,
        access_log=None,
        handle_signals=False,
        keepalive_timeout=settings.api_header_timeout_seconds,
    )


_REFUSAL_BODY = json.dumps(
    {"error": {"code": "too_many_connections", "message": "the server is at its connection cap"}}
).encode()
_REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"Content-Type: application/json\r\n"
    b"Content-Length: " + str(len(_REFUSAL_BODY)).encode() + b"\r\n"
    b"Retry-After: 1\r\n"
    b"Connection: close\r\n\r\n" + _REFUSAL_BODY
)


class _Refusal(asyncio.Protocol):
    """A connection past the cap: a 503 and close, before reading anything."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(_REFUSAL)
        transport.close()


class GuardedSite(web.BaseSite):
    """A TCP site that refuses connections past ``max_connections`` (0 = no cap)."""

    def __init__(
        self, runner: web.BaseRunner, host: str, port: int, *, max_connections: int = 0
    ) -> None:
        super().__init__(runner)
        self._host = host
        self._port = port
        self._max_connections = max_connections
        self.bound_port: int | None = None

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self.bound_port or self._port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None, "call runner.setup() first"
        cap = self._max_connections

        def protocol() -> asyncio.BaseProtocol:
            # server.connections: handlers between connection_made and the end of their task
            if cap and len(server.connections) >= cap:
                return _Refusal()
            handler = server()
            # same slots, one method more: aiohttp builds the handler, we answer its errors
            handler.__class__ = _JsonErrorHandler
            return handler

        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(protocol, self._host, self._port)
        sockets = self._server.sockets
        self.bound_port = sockets[0].getsockname()[1] if sockets else self._port
