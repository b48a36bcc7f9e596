"""When the bot leaves a room, and why (``LeaveReason``).

The room ends when ``stop`` is set (job stopped, worker draining), when the connection ends, or
when only agents have been present for ``empty_timeout_s`` after somebody was there, or for
``first_join_timeout_s`` while nobody has come yet. LiveKit's own rooms wait longer for the first
participant (5 min) than after the last one left; so does the bot, which usually arrives before
the people do (two browsers starting on a loaded machine took longer than 3 s to join). Time the
SDK spends reconnecting never counts.

How it ended says what the worker does next: a connection that was lost (``DISCONNECTED``: the
server died or went unreachable and the SDK gave up) is worth joining again while the session is
live; one the server ended on purpose (``REMOVED``: room deleted or closed, the bot removed, its
identity taken) is not.
"""

from __future__ import annotations

import asyncio
import logging
from enum import StrEnum

from livekit import rtc

logger = logging.getLogger("bot.livekit")


class LeaveReason(StrEnum):
    """Why the bot left a room (not to be confused with why an utterance ended)."""

    STOPPED = "stopped"
    EMPTY = "empty"
    DISCONNECTED = "disconnected"  # the connection was lost: rejoin while the session is live
    REMOVED = "removed"  # the server ended it on purpose


# Disconnect reasons that mean "the server meant it"; any other is a lost connection.
_REMOVED_REASONS = frozenset(
    {
        rtc.DisconnectReason.CLIENT_INITIATED,
        rtc.DisconnectReason.DUPLICATE_IDENTITY,
        rtc.DisconnectReason.PARTICIPANT_REMOVED,
        rtc.DisconnectReason.ROOM_DELETED,
        rtc.DisconnectReason.ROOM_CLOSED,
        rtc.DisconnectReason.USER_REJECTED,
    }
)


def leave_reason(reason: rtc.DisconnectReason.ValueType) -> LeaveReason:
    """What an SDK disconnect means for the job."""
    return LeaveReason.REMOVED if reason in _REMOVED_REASONS else LeaveReason.DISCONNECTED


class Presence:
    """Who (non-agent) is in the room during one connection, and when to leave it."""

    def __init__(self, empty_timeout_s: float, first_join_timeout_s: float | None = None) -> None:
        self.empty_timeout_s = empty_timeout_s
        # None: the same as empty_timeout_s
        self.first_join_timeout_s = first_join_timeout_s
        self.humans: set[str] = set()
        self._anybody_came = False
        self._changed = asyncio.Event()
        self._ended: LeaveReason | None = None
        self._disconnected = asyncio.Event()
        self._reconnecting = False

    def joined(self, identity: str) -> None:
        self.humans.add(identity)
        self._anybody_came = True
        self._changed.set()

    def left(self, identity: str) -> None:
        self.humans.discard(identity)
        self._changed.set()

    def reconnecting(self, reconnecting: bool) -> None:
        self._reconnecting = reconnecting
        logger.info("reconnecting to room" if reconnecting else "reconnected to room")
        self._changed.set()

    def disconnected(self, reason: LeaveReason) -> None:
        self._ended = reason
        self._disconnected.set()

    def _timeout_s(self) -> float:
        if self._anybody_came or self.first_join_timeout_s is None:
            return self.empty_timeout_s
        return self.first_join_timeout_s

    async def wait(self, stop: asyncio.Event) -> LeaveReason:
        """Until it is time to leave."""
        empty_since: float | None = None
        loop = asyncio.get_running_loop()
        while True:
            if stop.is_set():
                return LeaveReason.STOPPED
            if self._ended is not None:
                return self._ended
            if self.humans or self._reconnecting:
                empty_since = None
            elif empty_since is None:
                empty_since = loop.time()
            elif loop.time() - empty_since >= self._timeout_s():
                return LeaveReason.EMPTY
            self._changed.clear()
            waiters = [
                asyncio.ensure_future(e.wait()) for e in (stop, self._disconnected, self._changed)
            ]
            await asyncio.wait(waiters, timeout=0.5, return_when=asyncio.FIRST_COMPLETED)
            for w in waiters:
                w.cancel()
