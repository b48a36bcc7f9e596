"""How a room connection ended decides what the worker does: rejoin, or finish the job."""

from __future__ import annotations

import asyncio

import pytest
from livekit import rtc

from bot.livekit.presence import LeaveReason, Presence, leave_reason


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        (rtc.DisconnectReason.UNKNOWN_REASON, LeaveReason.DISCONNECTED),
        (rtc.DisconnectReason.SERVER_SHUTDOWN, LeaveReason.DISCONNECTED),
        (rtc.DisconnectReason.SIGNAL_CLOSE, LeaveReason.DISCONNECTED),
        (rtc.DisconnectReason.JOIN_FAILURE, LeaveReason.DISCONNECTED),
        (rtc.DisconnectReason.CONNECTION_TIMEOUT, LeaveReason.DISCONNECTED),
        (rtc.DisconnectReason.ROOM_DELETED, LeaveReason.REMOVED),
        (rtc.DisconnectReason.ROOM_CLOSED, LeaveReason.REMOVED),
        (rtc.DisconnectReason.PARTICIPANT_REMOVED, LeaveReason.REMOVED),
        (rtc.DisconnectReason.DUPLICATE_IDENTITY, LeaveReason.REMOVED),
    ],
)
async def test_a_lost_connection_is_told_apart_from_a_removal(
    reason: rtc.DisconnectReason.ValueType, expected: LeaveReason
) -> None:
    presence = Presence(empty_timeout_s=20.0)
    presence.joined("alice")
    presence.disconnected(leave_reason(reason))
    assert await presence.wait(asyncio.Event()) is expected


async def test_the_empty_room_timer_waits_while_the_sdk_reconnects() -> None:
    presence = Presence(empty_timeout_s=0.2)
    presence.reconnecting(True)  # participants vanish from view while it reconnects
    stop = asyncio.Event()
    waiting = asyncio.ensure_future(presence.wait(stop))
    await asyncio.sleep(1.0)
    assert not waiting.done(), "a reconnecting room is not empty"
    presence.reconnecting(False)
    assert await asyncio.wait_for(waiting, 5.0) is LeaveReason.EMPTY


async def test_a_room_with_people_stays_until_stopped() -> None:
    presence = Presence(empty_timeout_s=0.1)
    presence.joined("alice")
    stop = asyncio.Event()
    waiting = asyncio.ensure_future(presence.wait(stop))
    await asyncio.sleep(0.5)
    assert not waiting.done()
    stop.set()
    assert await asyncio.wait_for(waiting, 5.0) is LeaveReason.STOPPED


async def test_the_bot_waits_longer_for_the_first_participant_than_after_the_last() -> None:
    """Nobody has come yet: the first-join timeout; once somebody came and left: the empty one."""
    presence = Presence(empty_timeout_s=0.1, first_join_timeout_s=30.0)
    stop = asyncio.Event()
    waiting = asyncio.ensure_future(presence.wait(stop))
    await asyncio.sleep(1.0)
    assert not waiting.done(), "an empty room nobody has joined yet is waited for"
    presence.joined("alice")
    await asyncio.sleep(0.2)
    presence.left("alice")
    assert await asyncio.wait_for(waiting, 5.0) is LeaveReason.EMPTY


async def test_without_a_first_join_timeout_an_unjoined_room_ends_like_an_emptied_one() -> None:
    presence = Presence(empty_timeout_s=0.1)
    assert await asyncio.wait_for(presence.wait(asyncio.Event()), 5.0) is LeaveReason.EMPTY
