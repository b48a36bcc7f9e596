"""The dev server: an aiohttp application with LiveKit's signalling, Twirp and webhooks."""

from __future__ import annotations

import json
import logging
import os
import socket
import tempfile
from types import TracebackType

from aiohttp import web
from aiohttp.typedefs import Handler
from livekit.protocol import models

from .auth import TokenVerifier, bearer_token
from .config import DevServerConfig
from .errors import AuthError
from .room import RoomManager
from .signalling import SignalService
from .twirp import RoomService
from .webhooks import WebhookNotifier

logger = logging.getLogger("devserver")

_SHUTDOWN_TIMEOUT_S = 3.0
# Browsers (livekit-client) fetch /rtc/validate and / from the page's origin. Like LiveKit,
# every origin is allowed: the token, not the origin, authorizes a request.
_CORS_ALLOWED_METHODS = "GET, HEAD, POST, OPTIONS"
_CORS_ALLOWED_HEADERS = ("Authorization", "Content-Type")
_CORS_MAX_AGE_S = 86400


@web.middleware
async def _cors_preflight(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer a CORS preflight (``OPTIONS`` with ``Access-Control-Request-Method``) itself."""
    if request.method != "OPTIONS" or "Access-Control-Request-Method" not in request.headers:
        return await handler(request)
    requested = [
        name.strip()
        for name in request.headers.get("Access-Control-Request-Headers", "").split(",")
        if name.strip()
    ]
    allowed = list(_CORS_ALLOWED_HEADERS)
    allowed += [name for name in requested if name.lower() not in {a.lower() for a in allowed}]
    return web.Response(
        status=204,
        headers={
            "Access-Control-Allow-Methods": _CORS_ALLOWED_METHODS,
            "Access-Control-Allow-Headers": ", ".join(allowed),
            "Access-Control-Max-Age": str(_CORS_MAX_AGE_S),
        },
    )


async def _allow_any_origin(request: web.Request, response: web.StreamResponse) -> None:
    """Let browsers read every response, errors included (a refused token's reason, a 404)."""
    response.headers["Access-Control-Allow-Origin"] = "*"


class DevServer:
    """A LiveKit-compatible server for development and tests (production uses real LiveKit).

    ::

        async with DevServer(DevServerConfig(port=0)) as server:
            token = ...  # signed with server.config.api_key / api_secret
            await rtc.Room().connect(server.url, token)
    """

    def __init__(self, config: DevServerConfig | None = None) -> None:
        self.config = config or DevServerConfig()
        self.webhooks = WebhookNotifier(
            self.config.webhook_urls,
            api_key=self.config.api_key,
            api_secret=self.config.api_secret,
            queue_size=self.config.webhook_queue_size,
            timeout_s=self.config.webhook_timeout_s,
        )
        self.rooms = RoomManager(
            events=self.webhooks,
            empty_timeout_s=self.config.empty_timeout_s,
            departure_timeout_s=self.config.departure_timeout_s,
            auto_create=self.config.auto_create_rooms,
        )
        self._verifier = TokenVerifier({self.config.api_key: self.config.api_secret})
        self._signal = SignalService(self.config, self._verifier, self.rooms)
        self._room_service = RoomService(self.rooms, self._verifier)
        self._runner: web.AppRunner | None = None
        self._port: int | None = None

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        if self._runner is not None:
            raise RuntimeError("the dev server is already running")
        app = web.Application(middlewares=[_cors_preflight])
        app.on_response_prepare.append(_allow_any_origin)
        app.router.add_get("/", self._health)
        app.router.add_get("/rtc", self._signal.connect)
        app.router.add_get("/rtc/v1", self._signal.connect)
        app.router.add_get("/rtc/validate", self._signal.validate)
        app.router.add_get("/rtc/v1/validate", self._signal.validate)
        app.router.add_route("*", "/twirp/livekit.RoomService/{method}", self._room_service.handle)
        app.router.add_post("/devserver/v1/drop-signal", self._drop_signal)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=_SHUTDOWN_TIMEOUT_S)
        await runner.setup()
        site = web.TCPSite(runner, self.config.bind, self.config.port)
        try:
            await site.start()
        except OSError:
            await runner.cleanup()
            raise
        self._runner = runner
        self._port = _bound_port(site)
        await self.webhooks.start()
        if self.config.ready_file:
            _write_ready_file(self.config.ready_file, {"url": self.url, "http_url": self.http_url})
        logger.info("dev server listening", extra={"url": self.url, "api_key": self.config.api_key})

    async def stop(self) -> None:
        """Disconnect every participant (``SERVER_SHUTDOWN``), close rooms, stop listening."""
        if self._runner is None:
            return
        runner, self._runner = self._runner, None
        await self.rooms.close_all(models.SERVER_SHUTDOWN)
        await self.webhooks.stop()
        await runner.cleanup()
        logger.info("dev server stopped")

    async def __aenter__(self) -> DevServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- addresses ----------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the dev server is not started")
        return self._port

    @property
    def url(self) -> str:
        """The URL clients connect to, e.g. ``ws://127.0.0.1:7880``."""
        return f"ws://{_host_for_url(self.config.bind)}:{self.port}"

    @property
    def http_url(self) -> str:
        """The URL for the server API (``livekit.api.LiveKitAPI``)."""
        return f"http://{_host_for_url(self.config.bind)}:{self.port}"

    # -- handlers -----------------------------------------------------------------------------

    async def _health(self, request: web.Request) -> web.Response:
        return web.Response(text="OK")

    async def _drop_signal(self, request: web.Request) -> web.Response:
        """Dev-only: cut a participant's signal connection as a network failure would.

        ``POST /devserver/v1/drop-signal`` with ``{"room": ..., "identity": ...}`` and a token
        with ``roomAdmin`` on that room. The SDK then reconnects; tests use this to exercise it.
        """
        try:
            grants = self._verifier.verify(bearer_token(request.headers.get("Authorization"), None))
            body = await request.json()
            room_name, identity = str(body.get("room", "")), str(body.get("identity", ""))
        except AuthError as exc:
            return web.Response(status=exc.status, text=exc.message)
        except (ValueError, AttributeError):
            return web.Response(status=400, text="body must be JSON: {room, identity}")
        if not (grants.room_admin and grants.room == room_name):
            return web.Response(status=403, text="permissions denied: requires roomAdmin")
        room = self.rooms.get(room_name)
        participant = room.participants.get(identity) if room is not None else None
        channel = self._signal.channels.get(participant.sid) if participant is not None else None
        if channel is None:
            return web.Response(status=404, text="participant not found")
        channel.abort()
        return web.Response(text="dropped")


def _bound_port(site: web.TCPSite) -> int:
    server = site._server  # aiohttp keeps the asyncio server here; port 0 needs the real port
    sockets = getattr(server, "sockets", None) or []
    for sock in sockets:
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            return int(sock.getsockname()[1])
    raise RuntimeError("the dev server did not bind a TCP socket")


def _host_for_url(bind: str) -> str:
    if bind in ("", "0.0.0.0"):
        return "127.0.0.1"
    if bind == "::":
        return "[::1]"
    return f"[{bind}]" if ":" in bind else bind


def _write_ready_file(path: str, content: dict[str, str]) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    with tempfile.NamedTemporaryFile("w", dir=directory, delete=False) as handle:
        json.dump(content, handle)
        temp_name = handle.name
    os.replace(temp_name, path)  # readers never see a half-written file
