"""Webhooks verified by ``livekit.api.WebhookReceiver``; RoomService through ``LiveKitAPI``."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from livekit import api, rtc
from livekit.protocol import models
from livekit.protocol.webhook import WebhookEvent

from devserver.launcher import DevServerProcess

from .conftest import Webhook, WebhookSink
from .helpers import (
    API_KEY,
    API_SECRET,
    admin_token,
    connected,
    publish_audio,
    room_name,
    token,
)

pytestmark = pytest.mark.e2e

RECEIVER = api.WebhookReceiver(api.TokenVerifier(API_KEY, API_SECRET))


def verified(hook: Webhook) -> WebhookEvent | None:
    try:
        return RECEIVER.receive(hook.body, hook.authorization)
    except Exception:
        return None


async def webhook(sink: WebhookSink, room: str, event: str, identity: str = "") -> WebhookEvent:
    def matches(hook: Webhook) -> bool:
        parsed = verified(hook)
        return (
            parsed is not None
            and parsed.event == event
            and parsed.room.name == room
            and (not identity or parsed.participant.identity == identity)
        )

    hook = await asyncio.to_thread(sink.wait, matches)
    assert hook.content_type == "application/webhook+json"
    parsed = verified(hook)
    assert parsed is not None
    return parsed


async def test_webhooks_follow_a_room_lifecycle(
    devserver: DevServerProcess, webhook_sink: WebhookSink
) -> None:
    room = room_name("hooks")
    async with (
        connected(devserver.url, token("bob", room), events=["track_subscribed"]) as (_, bob),
        connected(devserver.url, token("alice", room)) as (alice, _),
    ):
        _, _, publication = await publish_audio(alice)
        await bob.wait("track_subscribed")
        await alice.local_participant.unpublish_track(publication.sid)

    started = await webhook(webhook_sink, room, "room_started")
    assert started.room.sid.startswith("RM_") and started.id.startswith("EV_")
    for identity in ("alice", "bob"):
        joined = await webhook(webhook_sink, room, "participant_joined", identity)
        assert joined.participant.sid.startswith("PA_")
    published = await webhook(webhook_sink, room, "track_published", "alice")
    assert published.track.sid == publication.sid
    assert published.track.type == models.AUDIO
    unpublished = await webhook(webhook_sink, room, "track_unpublished", "alice")
    assert unpublished.track.sid == publication.sid
    for identity in ("alice", "bob"):
        await webhook(webhook_sink, room, "participant_left", identity)
    finished = await webhook(webhook_sink, room, "room_finished")
    assert finished.room.sid == started.room.sid


async def test_webhook_signature_covers_the_body(
    devserver: DevServerProcess, webhook_sink: WebhookSink
) -> None:
    room = room_name("sig")
    async with connected(devserver.url, token("alice", room)):
        pass
    hook = await asyncio.to_thread(
        webhook_sink.wait, lambda h: (e := verified(h)) is not None and e.room.name == room
    )
    with pytest.raises(Exception, match="hash mismatch"):
        RECEIVER.receive(hook.body.replace(room, room + "x"), hook.authorization)


async def test_room_service_through_livekit_api(devserver: DevServerProcess) -> None:
    room = room_name("twirp")
    events = ["disconnected", "participant_disconnected"]
    lkapi = api.LiveKitAPI(devserver.http_url, API_KEY, API_SECRET)
    try:
        created = await lkapi.room.create_room(api.CreateRoomRequest(name=room, empty_timeout=60))
        assert created.name == room and created.sid.startswith("RM_")
        listed = await lkapi.room.list_rooms(api.ListRoomsRequest(names=[room]))
        assert [r.sid for r in listed.rooms] == [created.sid]

        async with (
            connected(devserver.url, token("alice", room), events=events) as (_, alice),
            connected(devserver.url, token("bob", room), events=events) as (_, bob),
        ):
            participants = await lkapi.room.list_participants(
                api.ListParticipantsRequest(room=room)
            )
            assert {p.identity for p in participants.participants} == {"alice", "bob"}

            await lkapi.room.remove_participant(
                api.RoomParticipantIdentity(room=room, identity="bob")
            )
            assert await bob.wait("disconnected") == (rtc.DisconnectReason.PARTICIPANT_REMOVED,)
            (left,) = await alice.wait("participant_disconnected")
            assert left.identity == "bob"

            await lkapi.room.delete_room(api.DeleteRoomRequest(room=room))
            assert await alice.wait("disconnected") == (rtc.DisconnectReason.ROOM_DELETED,)

        listed = await lkapi.room.list_rooms(api.ListRoomsRequest(names=[room]))
        assert list(listed.rooms) == []
        with pytest.raises(api.TwirpError) as missing:
            await lkapi.room.delete_room(api.DeleteRoomRequest(room=room))
        assert missing.value.code == "not_found"
    finally:
        await lkapi.aclose()


async def test_room_service_checks_admin_grants(devserver: DevServerProcess) -> None:
    room = room_name("perm")

    async def call(method: str, body: bytes, jwt_token: str) -> tuple[int, dict[str, str]]:
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                f"{devserver.http_url}/twirp/livekit.RoomService/{method}",
                data=body,
                headers={
                    "Authorization": f"Bearer {jwt_token}",
                    "Content-Type": "application/protobuf",
                },
            ) as response,
        ):
            return response.status, await response.json()

    create = api.CreateRoomRequest(name=room).SerializeToString()
    status, error = await call("CreateRoom", create, admin_token(room, room_list=True))
    assert (status, error["code"]) == (403, "permission_denied")
    assert "roomCreate" in error["msg"]

    listing = api.ListParticipantsRequest(room=room).SerializeToString()
    other_room_admin = admin_token("another-room", room_admin=True)
    status, error = await call("ListParticipants", listing, other_room_admin)
    assert (status, error["code"]) == (403, "permission_denied")

    status, error = await call("ListRooms", b"", "not-a-token")
    assert (status, error["code"]) == (401, "unauthenticated")
