"""How a room connection ended decides what the worker does: rejoin, or finish the job."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from livekit import rtc

from bot.livekit.room import EndReason, RoomOptions, RoomTranscriber


def room(**options: Any) -> RoomTranscriber:
    # engine and observer are not reached by the end-of-room logic
    return RoomTranscriber(engine=None, observer=None, options=RoomOptions(**options))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        (rtc.DisconnectReason.UNKNOWN_REASON, EndReason.DISCONNECTED),
        (rtc.DisconnectReason.SERVER_SHUTDOWN, EndReason.DISCONNECTED),
        (rtc.DisconnectReason.SIGNAL_CLOSE, EndReason.DISCONNECTED),
        (rtc.DisconnectReason.JOIN_FAILURE, EndReason.DISCONNECTED),
        (rtc.DisconnectReason.CONNECTION_TIMEOUT, EndReason.DISCONNECTED),
        (rtc.DisconnectReason.ROOM_DELETED, EndReason.REMOVED),
        (rtc.DisconnectReason.ROOM_CLOSED, EndReason.REMOVED),
        (rtc.DisconnectReason.PARTICIPANT_REMOVED, EndReason.REMOVED),
        (rtc.DisconnectReason.DUPLICATE_IDENTITY, EndReason.REMOVED),
    ],
)
async def test_a_lost_connection_is_told_apart_from_a_removal(
    reason: rtc.DisconnectReason.ValueType, expected: EndReason
) -> None:
    transcriber = room()
    transcriber._humans.add("alice")
    transcriber._on_disconnected(reason)
    assert await transcriber._wait_for_end(asyncio.Event()) is expected


async def test_the_empty_room_timer_waits_while_the_sdk_reconnects() -> None:
    transcriber = room(empty_timeout_s=0.2)
    transcriber._set_reconnecting(True)  # participants vanish from view while it reconnects
    stop = asyncio.Event()
    waiting = asyncio.ensure_future(transcriber._wait_for_end(stop))
    await asyncio.sleep(1.0)
    assert not waiting.done(), "a reconnecting room is not empty"
    transcriber._set_reconnecting(False)
    assert await asyncio.wait_for(waiting, 5.0) is EndReason.EMPTY
