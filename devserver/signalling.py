"""LiveKit's signalling over WebSocket: ``/rtc/v1`` (single peer connection) and ``/rtc``.

The SDK first opens ``/rtc/v1?join_request=<base64url WrappedJoinRequest>`` and falls back to
``/rtc`` (query parameters, two peer connections) when that answers 404. The token comes as
``Authorization: Bearer``. A refused upgrade is explained by ``/rtc/validate``, which the SDK
calls after a failed handshake; 401/403 there make the SDK give up at once.

A resume (``reconnect``) is answered with a ``LeaveRequest`` asking for a full reconnect:
aiortc cannot restart ICE, so the SDK rejoins with a fresh session instead.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import gzip
import io
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web
from google.protobuf.message import DecodeError
from livekit.protocol import models, rtc

from .auth import Grants, TokenVerifier, bearer_token, grants_from_claims, join_room_name
from .config import DevServerConfig
from .errors import AuthError
from .participant import Participant
from .room import Room, RoomManager

logger = logging.getLogger("devserver")

_MAX_JOIN_REQUEST_BYTES = 256 * 1024
_WS_CLOSE_TIMEOUT_S = 2.0
# like LiveKit: clients get a fresh token now and then, so a reconnect works after the
# join token has expired
_TOKEN_REFRESH_INTERVAL_S = 300.0
_REFRESHED_TOKEN_TTL_S = 600


@dataclass(slots=True)
class JoinParams:
    grants: Grants
    claims: dict[str, Any]
    room_name: str
    single_peer_connection: bool
    reconnect: bool = False
    auto_subscribe: bool = True
    client: models.ClientInfo = field(default_factory=models.ClientInfo)
    publisher_offer: str | None = None
    publisher_offer_id: int = 0  # the client's number for that offer, echoed in the answer
    metadata: str = ""
    attributes: dict[str, str] = field(default_factory=dict)


def parse_join(request: web.Request, verifier: TokenVerifier, *, v1: bool) -> JoinParams:
    """Authenticate a join and read its parameters; raises :class:`AuthError`."""
    token = bearer_token(request.headers.get("Authorization"), request.query.get("access_token"))
    claims = verifier.verify_claims(token)
    grants = grants_from_claims(claims)
    room_name = join_room_name(grants, request.query.get("room"))
    params = JoinParams(
        grants=grants, claims=claims, room_name=room_name, single_peer_connection=v1
    )
    if not v1:
        query = request.query
        params.reconnect = query.get("reconnect") in {"1", "true"}
        params.auto_subscribe = query.get("auto_subscribe", "1") not in {"0", "false"}
        params.client = models.ClientInfo(
            version=query.get("version", ""),
            os=query.get("os", ""),
            os_version=query.get("os_version", ""),
            device_model=query.get("device_model", ""),
            protocol=_int(query.get("protocol")),
            client_protocol=_int(query.get("client_protocol")),
        )
        for name in query.get("capabilities", "").split(","):
            if name in models.ClientInfo.Capability.keys():  # noqa: SIM118  # a protobuf enum
                params.client.capabilities.append(models.ClientInfo.Capability.Value(name))  # type: ignore[arg-type]
        return params

    join = _decode_join_request(request.query.get("join_request", ""))
    params.reconnect = join.reconnect
    params.auto_subscribe = (
        join.connection_settings.auto_subscribe if join.HasField("connection_settings") else True
    )
    params.client = join.client_info
    if join.HasField("publisher_offer") and join.publisher_offer.sdp:
        params.publisher_offer = join.publisher_offer.sdp
        params.publisher_offer_id = join.publisher_offer.id
    if grants.can_update_own_metadata:
        params.metadata = join.metadata
        params.attributes = dict(join.participant_attributes)
    return params


def _decode_join_request(encoded: str) -> rtc.JoinRequest:
    if not encoded:
        raise AuthError(400, "join_request is required on /rtc/v1")
    try:
        raw = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        wrapped = rtc.WrappedJoinRequest()
        wrapped.ParseFromString(raw)
        payload = wrapped.join_request
        if wrapped.compression == rtc.WrappedJoinRequest.GZIP:
            with gzip.GzipFile(fileobj=io.BytesIO(payload), mode="rb") as unzipped:
                payload = unzipped.read(_MAX_JOIN_REQUEST_BYTES + 1)
        if len(payload) > _MAX_JOIN_REQUEST_BYTES:
            raise AuthError(400, "join request too large")
        join = rtc.JoinRequest()
        join.ParseFromString(payload)
    except (binascii.Error, DecodeError, OSError, EOFError):
        raise AuthError(400, "cannot decode join_request") from None
    return join


def _int(value: str | None) -> int:
    try:
        return int(value or 0)
    except ValueError:
        return 0


class SignalChannel:
    """A participant's WebSocket: responses go out in order through one bounded queue."""

    def __init__(self, ws: web.WebSocketResponse, request: web.Request, *, queue_size: int) -> None:
        self._ws = ws
        self._request = request
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue(queue_size)
        self._closing = False

    def send(self, response: rtc.SignalResponse) -> None:
        if self._closing:
            return
        try:
            self._queue.put_nowait(response.SerializeToString())
        except asyncio.QueueFull:
            logger.warning("client does not read its signal messages; dropping it")
            self.abort()

    def close_soon(self) -> None:
        """Close after what is queued has been sent."""
        if self._closing:
            return
        self._closing = True
        try:
            self._queue.put_nowait(None)
        except asyncio.QueueFull:
            self.abort()

    def abort(self) -> None:
        """Cut the connection without a goodbye, as a network failure would."""
        self._closing = True
        transport = self._request.transport
        if transport is not None:
            transport.close()

    async def run_writer(self) -> None:
        try:
            while (item := await self._queue.get()) is not None:
                await self._ws.send_bytes(item)
        except (ConnectionError, RuntimeError):
            pass  # the socket is gone; the reader notices and cleans up
        finally:
            self._closing = True
            if not self._ws.closed:
                await self._ws.close()


class SignalService:
    """The aiohttp handlers for ``/rtc``, ``/rtc/v1`` and their ``/validate`` variants."""

    def __init__(
        self, config: DevServerConfig, verifier: TokenVerifier, rooms: RoomManager
    ) -> None:
        self._config = config
        self._verifier = verifier
        self._rooms = rooms
        self.channels: dict[str, SignalChannel] = {}  # participant sid -> its signal connection

    async def validate(self, request: web.Request) -> web.Response:
        v1 = request.path.startswith("/rtc/v1")
        if v1 and not self._config.single_peer_connection:
            # the SDK falls back to /rtc on this 404 (and only on a 404)
            return web.Response(status=404, text="single peer connection (/rtc/v1) is off")
        try:
            params = parse_join(request, self._verifier, v1=v1)
            if not self._config.auto_create_rooms and self._rooms.get(params.room_name) is None:
                raise AuthError(404, f"requested room does not exist: {params.room_name!r}")
        except AuthError as exc:
            return web.Response(status=exc.status, text=exc.message)
        return web.Response(text="success")

    async def connect(self, request: web.Request) -> web.StreamResponse:
        v1 = request.path.rstrip("/").endswith("/v1")
        if v1 and not self._config.single_peer_connection:
            raise web.HTTPNotFound()
        if request.headers.get("Upgrade", "").lower() != "websocket":
            raise web.HTTPNotFound()
        try:
            params = parse_join(request, self._verifier, v1=v1)
            room = None if params.reconnect else self._rooms.room_for_join(params.room_name)
        except AuthError as exc:
            return web.Response(status=exc.status, text=exc.message)

        ws = web.WebSocketResponse(
            timeout=_WS_CLOSE_TIMEOUT_S, max_msg_size=4 * 1024 * 1024, compress=False
        )
        await ws.prepare(request)
        if room is None:
            await self._refuse_resume(ws)
            return ws
        await self._serve(request, ws, room, params)
        return ws

    async def _refuse_resume(self, ws: web.WebSocketResponse) -> None:
        response = rtc.SignalResponse()
        response.leave.can_reconnect = True
        response.leave.action = rtc.LeaveRequest.RECONNECT
        response.leave.reason = models.STATE_MISMATCH
        await ws.send_bytes(response.SerializeToString())
        await ws.close()

    async def _serve(
        self, request: web.Request, ws: web.WebSocketResponse, room: Room, params: JoinParams
    ) -> None:
        config = self._config
        channel = SignalChannel(ws, request, queue_size=config.signal_queue_size)
        participant = Participant(
            room=room,
            grants=params.grants,
            client=params.client,
            auto_subscribe=params.auto_subscribe,
            single_peer_connection=params.single_peer_connection,
            signal=channel,
            forward_queue_packets=config.forward_queue_packets,
            metadata=params.metadata,
            attributes=params.attributes,
        )
        writer = asyncio.create_task(channel.run_writer(), name=f"signal-writer:{participant.sid}")
        refresher: asyncio.Task[None] | None = None
        self.channels[participant.sid] = channel
        reason: int = models.SIGNAL_CLOSE
        try:
            try:
                await room.join(
                    participant,
                    ping_interval_s=config.ping_interval_s,
                    ping_timeout_s=config.ping_timeout_s,
                )
            except AuthError as exc:
                logger.info("join refused", extra={"status": exc.status})
                participant.leave(models.JOIN_FAILURE)
                return
            logger.info(
                "participant joined",
                extra={"room_sid": room.sid, "participant_sid": participant.sid},
            )
            refresher = asyncio.create_task(
                self._refresh_tokens(participant, params.claims),
                name=f"token-refresh:{participant.sid}",
            )
            try:
                participant.transport.start(participant.sid)
                if params.publisher_offer is not None:
                    await participant.transport.handle_offer(
                        params.publisher_offer, params.publisher_offer_id
                    )
            except Exception:
                logger.exception("could not set up the participant's connection")
                participant.leave(models.JOIN_FAILURE)
                return
            if await self._read_loop(ws, participant, channel):
                reason = models.CLIENT_INITIATED
        except asyncio.CancelledError:
            reason = models.SERVER_SHUTDOWN
            raise
        finally:
            if refresher is not None:
                refresher.cancel()
            self.channels.pop(participant.sid, None)
            await room.remove(participant, reason, notify_client=False)
            channel.close_soon()
            try:
                await asyncio.wait_for(writer, _WS_CLOSE_TIMEOUT_S * 2)
            except (TimeoutError, asyncio.CancelledError):
                writer.cancel()
            logger.info(
                "participant left", extra={"room_sid": room.sid, "participant_sid": participant.sid}
            )

    async def _refresh_tokens(self, participant: Participant, claims: dict[str, Any]) -> None:
        while True:
            response = rtc.SignalResponse()
            response.refresh_token = self._verifier.refreshed(claims, ttl_s=_REFRESHED_TOKEN_TTL_S)
            participant.send(response)
            await asyncio.sleep(_TOKEN_REFRESH_INTERVAL_S)

    async def _read_loop(
        self, ws: web.WebSocketResponse, participant: Participant, channel: SignalChannel
    ) -> bool:
        """Handle requests until the client leaves (True) or the connection ends (False)."""
        timeout_s = float(self._config.ping_timeout_s)
        while True:
            try:
                message = await ws.receive(timeout=timeout_s)
            except TimeoutError:
                logger.info(
                    "client stopped pinging; dropping it",
                    extra={"participant_sid": participant.sid},
                )
                channel.abort()
                return False
            if message.type in (
                WSMsgType.CLOSE,
                WSMsgType.CLOSING,
                WSMsgType.CLOSED,
                WSMsgType.ERROR,
            ):
                return False
            if message.type != WSMsgType.BINARY:
                continue
            request = rtc.SignalRequest()
            try:
                request.ParseFromString(message.data)
            except DecodeError:
                logger.debug("ignoring an undecodable signal message")
                continue
            kind = request.WhichOneof("message")
            if kind == "leave":
                return True
            if kind == "ping_req":
                pong = rtc.SignalResponse()
                pong.pong_resp.last_ping_timestamp = request.ping_req.timestamp
                pong.pong_resp.timestamp = int(time.time() * 1000)
                participant.send(pong)
                continue
            if kind == "ping":
                pong = rtc.SignalResponse()
                pong.pong = request.ping
                participant.send(pong)
                continue
            try:
                await participant.handle_request(request)
            except Exception:
                logger.exception("signal request failed", extra={"request": kind})
