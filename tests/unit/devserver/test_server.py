"""The server in-process on loopback: signalling over a raw WebSocket, validate, Twirp, webhooks.

No media flows here (that needs a non-loopback interface, see tests/e2e/devserver); these
tests speak the protocol directly, the way the SDK does.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from livekit import api
from livekit.protocol import models, rtc
from livekit.protocol.webhook import WebhookEvent

from devserver import DevServer, DevServerConfig

KEY = "devkey"
SECRET = "unit-test-secret-0123456789abcdef0123"


def token(identity: str, room: str, **grants: object) -> str:
    access = api.AccessToken(KEY, SECRET).with_identity(identity)
    return access.with_grants(api.VideoGrants(room_join=True, room=room, **grants)).to_jwt()  # type: ignore[arg-type]


class Hooks:
    """A webhook receiver on loopback, verifying with the SDK's WebhookReceiver."""

    def __init__(self) -> None:
        self.events: asyncio.Queue[WebhookEvent] = asyncio.Queue()
        self._receiver = api.WebhookReceiver(api.TokenVerifier(KEY, SECRET))

    async def handle(self, request: web.Request) -> web.Response:
        assert request.content_type == "application/webhook+json"
        body = await request.text()
        await self.events.put(self._receiver.receive(body, request.headers["Authorization"]))
        return web.Response()

    async def next(self, event: str) -> WebhookEvent:
        while True:
            received = await asyncio.wait_for(self.events.get(), 10)
            if received.event == event:
                return received


@pytest.fixture
async def hooks() -> AsyncIterator[tuple[Hooks, str]]:
    sink = Hooks()
    app = web.Application()
    app.router.add_post("/hook", sink.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield sink, f"http://127.0.0.1:{port}/hook"
    await runner.cleanup()


@pytest.fixture
async def server(hooks: tuple[Hooks, str]) -> AsyncIterator[DevServer]:
    config = DevServerConfig(
        port=0, api_secret=SECRET, webhook_urls=(hooks[1],), departure_timeout_s=0.2
    )
    async with DevServer(config) as running:
        yield running


def join_request_param(join: rtc.JoinRequest) -> str:
    wrapped = rtc.WrappedJoinRequest(
        compression=rtc.WrappedJoinRequest.GZIP,
        join_request=gzip.compress(join.SerializeToString()),
    )
    return base64.urlsafe_b64encode(wrapped.SerializeToString()).decode().rstrip("=")


class Signal:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws

    async def next(self, kind: str) -> rtc.SignalResponse:
        while True:
            message = await asyncio.wait_for(self.ws.receive(), 10)
            assert message.type == aiohttp.WSMsgType.BINARY, message
            response = rtc.SignalResponse()
            response.ParseFromString(message.data)
            if response.WhichOneof("message") == kind:
                return response

    async def send(self, request: rtc.SignalRequest) -> None:
        await self.ws.send_bytes(request.SerializeToString())


async def open_signal(
    session: aiohttp.ClientSession, server: DevServer, jwt_token: str, query: str = ""
) -> Signal:
    ws = await session.ws_connect(
        f"{server.url}/rtc{query}", headers={"Authorization": f"Bearer {jwt_token}"}
    )
    return Signal(ws)


async def test_health_and_validate(server: DevServer) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(server.http_url) as response:
            assert await response.text() == "OK"
        headers = {"Authorization": f"Bearer {token('a', 'r1')}"}
        async with session.get(f"{server.http_url}/rtc/validate", headers=headers) as response:
            assert (response.status, await response.text()) == (200, "success")
        async with session.get(f"{server.http_url}/rtc/validate") as response:
            assert response.status == 401 and "no access token" in await response.text()
        async with session.get(f"{server.http_url}/rtc/v1", headers=headers) as response:
            assert response.status == 404  # not a WebSocket upgrade


async def test_two_peer_connection_join_ping_and_leave(server: DevServer) -> None:
    async with aiohttp.ClientSession() as session:
        signal = await open_signal(session, server, token("alice", "r1"), "?auto_subscribe=1")
        join = (await signal.next("join")).join
        assert join.room.name == "r1" and join.room.sid.startswith("RM_")
        assert join.participant.identity == "alice" and join.participant.sid.startswith("PA_")
        assert join.subscriber_primary  # /rtc: the server offers on the subscriber connection
        assert join.ping_interval > 0 and join.ping_timeout > join.ping_interval
        offer = (await signal.next("offer")).offer
        assert "m=application" in offer.sdp  # the server's data channels

        ping = rtc.SignalRequest()
        ping.ping_req.timestamp = 1234
        await signal.send(ping)
        assert (await signal.next("pong_resp")).pong_resp.last_ping_timestamp == 1234

        second = await open_signal(session, server, token("bob", "r1"))
        others = (await second.next("join")).join.other_participants
        assert [p.identity for p in others] == ["alice"]
        update = (await signal.next("update")).update
        assert [p.identity for p in update.participants] == ["bob"]

        leave = rtc.SignalRequest()
        leave.leave.reason = models.CLIENT_INITIATED
        await second.send(leave)
        update = (await signal.next("update")).update
        assert update.participants[0].state == models.ParticipantInfo.DISCONNECTED
        await signal.ws.close()
        await second.ws.close()


async def test_single_peer_connection_join(server: DevServer) -> None:
    join = rtc.JoinRequest()
    join.client_info.sdk = models.ClientInfo.PYTHON
    join.connection_settings.auto_subscribe = True
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(
            f"{server.url}/rtc/v1?join_request={join_request_param(join)}",
            headers={"Authorization": f"Bearer {token('alice', 'r2')}"},
        )
        response = (await Signal(ws).next("join")).join
        assert not response.subscriber_primary and response.participant.identity == "alice"
        await ws.close()


async def test_v1_can_be_switched_off(hooks: tuple[Hooks, str]) -> None:
    config = DevServerConfig(port=0, api_secret=SECRET, single_peer_connection=False)
    async with DevServer(config) as running, aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(
                f"{running.url}/rtc/v1?join_request=x",
                headers={"Authorization": f"Bearer {token('a', 'r')}"},
            )
        assert refused.value.status == 404


async def test_refused_upgrade_and_resume(server: DevServer) -> None:
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await open_signal(session, server, token("a", "r1"), "?room=elsewhere")
        assert refused.value.status == 401
        # a resume is answered with a request for a full reconnect
        signal = await open_signal(session, server, token("a", "r1"), "?reconnect=1&sid=PA_x")
        leave = (await signal.next("leave")).leave
        assert leave.action == rtc.LeaveRequest.RECONNECT and leave.can_reconnect
        await signal.ws.close()


async def test_duplicate_identity_replaces_the_first_session(server: DevServer) -> None:
    async with aiohttp.ClientSession() as session:
        first = await open_signal(session, server, token("alice", "r3"))
        await first.next("join")
        second = await open_signal(session, server, token("alice", "r3"))
        await second.next("join")
        assert (await first.next("leave")).leave.reason == models.DUPLICATE_IDENTITY
        await second.ws.close()


async def test_room_service_and_room_webhooks(server: DevServer, hooks: tuple[Hooks, str]) -> None:
    sink, _ = hooks
    lkapi = api.LiveKitAPI(server.http_url, KEY, SECRET)
    try:
        room = await lkapi.room.create_room(api.CreateRoomRequest(name="ops", metadata="m"))
        started = await sink.next("room_started")
        assert started.room.sid == room.sid and started.room.metadata == "m"
        assert [r.name for r in (await lkapi.room.list_rooms(api.ListRoomsRequest())).rooms] == [
            "ops"
        ]
        await lkapi.room.delete_room(api.DeleteRoomRequest(room="ops"))
        assert (await sink.next("room_finished")).room.sid == room.sid
    finally:
        await lkapi.aclose()


async def test_twirp_json_and_errors(server: DevServer) -> None:
    admin = api.AccessToken(KEY, SECRET).with_grants(api.VideoGrants(room_list=True)).to_jwt()
    url = f"{server.http_url}/twirp/livekit.RoomService"
    headers = {"Authorization": f"Bearer {admin}"}
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{url}/ListRooms", json={}, headers=headers) as response:
            assert response.status == 200 and await response.json() == {}
        async with session.post(f"{url}/Nope", json={}, headers=headers) as response:
            assert (await response.json())["code"] == "bad_route"
        async with session.post(f"{url}/DeleteRoom", json={"room": "x"}, headers=headers) as r:
            assert r.status == 403 and (await r.json())["code"] == "permission_denied"


async def test_an_empty_room_closes_after_its_timeout(
    server: DevServer, hooks: tuple[Hooks, str]
) -> None:
    sink, _ = hooks
    lkapi = api.LiveKitAPI(server.http_url, KEY, SECRET)
    try:
        started_at = time.monotonic()
        await lkapi.room.create_room(api.CreateRoomRequest(name="brief", empty_timeout=1))
        assert (await sink.next("room_finished")).room.name == "brief"
        assert time.monotonic() - started_at >= 0.9
        assert server.rooms.get("brief") is None
    finally:
        await lkapi.aclose()


async def test_clients_get_refreshed_tokens(server: DevServer) -> None:
    short = token("alice", "r4")
    async with aiohttp.ClientSession() as session:
        signal = await open_signal(session, server, short)
        refreshed = (await signal.next("refresh_token")).refresh_token
        claims = api.TokenVerifier(KEY, SECRET).verify(refreshed)
        assert claims.identity == "alice" and claims.video is not None
        assert claims.video.room == "r4" and claims.video.room_join
        await signal.ws.close()
