"""The Twirp ``livekit.RoomService`` subset that ``livekit.api.LiveKitAPI`` uses for operations.

``POST /twirp/livekit.RoomService/<Method>`` with a protobuf (or JSON) body and an
``Authorization: Bearer <token>`` header; admin grants are checked like LiveKit does:
``roomCreate`` for CreateRoom/DeleteRoom, ``roomList`` for ListRooms, ``roomAdmin`` on the
named room for participant calls. Errors are Twirp JSON: ``{"code": ..., "msg": ...}``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from livekit.protocol import models
from livekit.protocol import room as room_proto

from .auth import Grants, TokenVerifier, bearer_token
from .errors import AuthError, TwirpError
from .participant import Participant
from .room import RoomManager

logger = logging.getLogger("devserver")

_Handler = Callable[[Grants, Any], Awaitable[Message]]


class RoomService:
    def __init__(self, rooms: RoomManager, verifier: TokenVerifier) -> None:
        self._rooms = rooms
        self._verifier = verifier
        self._methods: dict[str, tuple[type[Message], _Handler]] = {
            "CreateRoom": (room_proto.CreateRoomRequest, self._create_room),
            "ListRooms": (room_proto.ListRoomsRequest, self._list_rooms),
            "DeleteRoom": (room_proto.DeleteRoomRequest, self._delete_room),
            "ListParticipants": (room_proto.ListParticipantsRequest, self._list_participants),
            "GetParticipant": (room_proto.RoomParticipantIdentity, self._get_participant),
            "RemoveParticipant": (room_proto.RoomParticipantIdentity, self._remove_participant),
        }

    async def handle(self, request: web.Request) -> web.Response:
        method = request.match_info.get("method", "")
        is_json = request.content_type == "application/json"
        try:
            if request.method != "POST":
                raise TwirpError("bad_route", "Twirp methods must be called with POST")
            entry = self._methods.get(method)
            if entry is None:
                raise TwirpError("bad_route", f"no such method: livekit.RoomService/{method}")
            request_type, handler = entry
            grants = self._authenticate(request)
            message = request_type()
            body = await request.read()
            try:
                if is_json:
                    json_format.Parse(body.decode() or "{}", message, ignore_unknown_fields=True)
                else:
                    message.ParseFromString(body)
            except (DecodeError, json_format.ParseError, UnicodeDecodeError):
                raise TwirpError("malformed", "the request body could not be decoded") from None
            result = await handler(grants, message)
        except TwirpError as exc:
            return web.Response(
                status=exc.status,
                text=json.dumps({"code": exc.code, "msg": exc.message}),
                content_type="application/json",
            )
        if is_json:
            return web.Response(
                text=json_format.MessageToJson(result, indent=None), content_type="application/json"
            )
        return web.Response(body=result.SerializeToString(), content_type="application/protobuf")

    def _authenticate(self, request: web.Request) -> Grants:
        try:
            token = bearer_token(request.headers.get("Authorization"), None)
            return self._verifier.verify(token)
        except AuthError as exc:
            raise TwirpError("unauthenticated", exc.message) from None

    @staticmethod
    def _require(allowed: bool, what: str) -> None:
        if not allowed:
            raise TwirpError("permission_denied", f"permissions denied: requires {what}")

    def _require_admin(self, grants: Grants, room: str) -> None:
        self._require(grants.room_admin and grants.room == room, f"roomAdmin for room {room!r}")

    async def _create_room(self, grants: Grants, req: room_proto.CreateRoomRequest) -> Message:
        self._require(grants.room_create, "roomCreate")
        if not req.name:
            raise TwirpError("invalid_argument", "room name is required")
        existing = self._rooms.get(req.name)
        if existing is not None:
            return existing.info()
        room = self._rooms.create(
            req.name,
            empty_timeout_s=float(req.empty_timeout) if req.empty_timeout else None,
            departure_timeout_s=float(req.departure_timeout) if req.departure_timeout else None,
            metadata=req.metadata,
            max_participants=req.max_participants,
        )
        return room.info()

    async def _list_rooms(self, grants: Grants, req: room_proto.ListRoomsRequest) -> Message:
        self._require(grants.room_list, "roomList")
        names = set(req.names)
        rooms = [r.info() for r in self._rooms.rooms() if not names or r.name in names]
        return room_proto.ListRoomsResponse(rooms=rooms)

    async def _delete_room(self, grants: Grants, req: room_proto.DeleteRoomRequest) -> Message:
        self._require(grants.room_create, "roomCreate")
        room = self._rooms.get(req.room)
        if room is None:
            raise TwirpError("not_found", f"room not found: {req.room!r}")
        await room.close(models.ROOM_DELETED)
        return room_proto.DeleteRoomResponse()

    async def _list_participants(
        self, grants: Grants, req: room_proto.ListParticipantsRequest
    ) -> Message:
        self._require_admin(grants, req.room)
        room = self._rooms.get(req.room)
        if room is None:
            raise TwirpError("not_found", f"room not found: {req.room!r}")
        participants = [p.info() for p in room.participants.values() if p.is_present]
        return room_proto.ListParticipantsResponse(participants=participants)

    async def _get_participant(
        self, grants: Grants, req: room_proto.RoomParticipantIdentity
    ) -> Message:
        self._require_admin(grants, req.room)
        participant = self._find(req)
        return participant.info()

    async def _remove_participant(
        self, grants: Grants, req: room_proto.RoomParticipantIdentity
    ) -> Message:
        self._require_admin(grants, req.room)
        participant = self._find(req)
        room = self._rooms.get(req.room)
        assert room is not None  # the participant was found in it
        await room.remove(participant, models.PARTICIPANT_REMOVED, notify_client=True)
        return room_proto.RemoveParticipantResponse()

    def _find(self, req: room_proto.RoomParticipantIdentity) -> Participant:
        room = self._rooms.get(req.room)
        participant = room.participants.get(req.identity) if room is not None else None
        if participant is None:
            raise TwirpError("not_found", f"participant not found: {req.identity!r}")
        return participant
