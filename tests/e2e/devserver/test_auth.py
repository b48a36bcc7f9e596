"""Tokens and grants: refused joins fail fast with a clear error; grants are enforced."""

from __future__ import annotations

import asyncio
import datetime
import time

import aiohttp
import jwt
import pytest
from livekit import rtc

from devserver.launcher import DevServerProcess

from .helpers import (
    API_KEY,
    API_SECRET,
    connected,
    play_forever,
    publish_audio,
    room_name,
    token,
)

pytestmark = pytest.mark.e2e

# A refused join must not be retried for long: the SDK would otherwise spend 3 x 5 s and more.
FAIL_FAST_S = 10.0


def forged_token(claims: dict[str, object]) -> str:
    now = int(time.time())
    return jwt.encode(
        {"iss": API_KEY, "nbf": now - 10, "exp": now + 600, **claims}, API_SECRET, "HS256"
    )


async def refused(url: str, jwt_token: str) -> str:
    """Connect with a token the server must refuse; returns the SDK's error message."""
    room = rtc.Room()
    with pytest.raises(rtc.ConnectError) as caught:
        await asyncio.wait_for(room.connect(url, jwt_token), FAIL_FAST_S)
    return str(caught.value)


async def validate(http_url: str, jwt_token: str, query: str = "") -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"{http_url}/rtc/validate{query}", headers={"Authorization": f"Bearer {jwt_token}"}
        ) as response,
    ):
        return response.status, await response.text()


async def test_bad_signature_is_refused(devserver: DevServerProcess) -> None:
    bad = token("alice", room_name(), secret="not-the-server-secret-0123456789abcdef")
    message = await refused(devserver.url, bad)
    assert "signature is invalid" in message
    assert await validate(devserver.http_url, bad) == (
        401,
        "invalid authorization token: signature is invalid "
        "(was it signed with this server's API secret?)",
    )


async def test_expired_token_is_refused(devserver: DevServerProcess) -> None:
    expired = forged_token(
        {"sub": "alice", "exp": int(time.time()) - 120, "video": {"roomJoin": True, "room": "r"}}
    )
    assert "token is expired" in await refused(devserver.url, expired)
    assert await validate(devserver.http_url, expired) == (
        401,
        "invalid authorization token: token is expired",
    )


async def test_token_without_room_join_is_refused(devserver: DevServerProcess) -> None:
    no_join = forged_token({"sub": "alice", "video": {"room": "r", "roomList": True}})
    assert "no roomJoin grant" in await refused(devserver.url, no_join)


async def test_token_for_another_room_is_refused(devserver: DevServerProcess) -> None:
    jwt_token = token("alice", "room-a")
    message = await refused(f"{devserver.url}?room=room-b", jwt_token)
    assert "grants room 'room-a'" in message and "'room-b'" in message
    status, text = await validate(devserver.http_url, jwt_token, "?room=room-b")
    assert status == 401 and "not the requested room 'room-b'" in text


async def test_unknown_api_key_is_refused(devserver: DevServerProcess) -> None:
    now = int(time.time())
    other_key = jwt.encode(
        {"iss": "otherkey", "sub": "a", "exp": now + 60, "video": {"roomJoin": True, "room": "r"}},
        API_SECRET,
        "HS256",
    )
    assert "invalid API key" in await refused(devserver.url, other_key)


async def test_valid_token_validates(devserver: DevServerProcess) -> None:
    jwt_token = token("alice", room_name(), ttl=datetime.timedelta(minutes=5))
    assert await validate(devserver.http_url, jwt_token) == (200, "success")


async def test_subscribe_and_data_grants_are_enforced(devserver: DevServerProcess) -> None:
    room = room_name("grants")
    url = devserver.url
    events = ["track_subscribed", "track_published", "data_received"]
    async with (
        connected(url, token("listener", room), events=events) as (_, listener),
        connected(url, token("deaf", room, can_subscribe=False), events=events) as (_, deaf),
        connected(url, token("mute", room, can_publish_data=False)) as (mute, _),
        connected(url, token("speaker", room)) as (speaker, _),
    ):
        source, _, publication = await publish_audio(speaker)
        player = asyncio.create_task(play_forever(source))
        try:
            await listener.wait("track_subscribed")
            await deaf.wait("track_published", lambda pub, p: pub.sid == publication.sid)

            await mute.local_participant.publish_data(b"from mute")
            await speaker.local_participant.publish_data(b"sync")
            for events_of in (listener, deaf):
                await events_of.wait("data_received", lambda p: p.data == b"sync")
            assert not listener.seen("data_received", lambda p: p.data == b"from mute")
            assert not deaf.seen("track_subscribed")
        finally:
            player.cancel()


async def test_publish_grant_is_enforced(devserver: DevServerProcess) -> None:
    room = room_name("nopub")
    url = devserver.url
    async with (
        connected(url, token("listener", room), events=["track_published"]) as (_, listener),
        connected(url, token("viewer", room, can_publish=False)) as (viewer, _),
    ):
        with pytest.raises(Exception, match=r"(?i)timed out|timeout|publish"):
            await asyncio.wait_for(publish_audio(viewer), 30.0)
        assert not listener.seen("track_published")
