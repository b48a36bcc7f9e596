"""The captions of one track waiting for a slow sink (the room), in order."""

from __future__ import annotations

import asyncio
from collections import deque

from bot.pipeline.types import SpokenCaption


class CaptionOutbox:
    """Captions of one track waiting to be published, in order.

    A partial that has not gone out yet is replaced by a newer partial of the same utterance
    (the newer one carries the whole text), so a slow room link delays nothing by more than one
    send; finals are never dropped. ``close`` lets the publisher drain and stop.

    Bound: at most one partial per utterance waits, and ``max_finals`` finals. A final beyond
    that makes ``put`` wait (backpressure): the track's pipeline stalls behind it, back to the
    audio source, whose own bounded buffer drops the oldest audio. A link that slow loses audio
    not yet heard, never a final already decoded. At one final per utterance, 64 finals are
    minutes of speech behind: a healthy link never gets there.
    """

    def __init__(self, max_finals: int = 64) -> None:
        self._items: deque[SpokenCaption] = deque()
        self._ready = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._closed = False
        self._finals = 0
        self._max_finals = max_finals
        self.replaced = 0

    async def put(self, item: SpokenCaption) -> None:
        if self._items and not item.caption.is_final:
            last = self._items[-1].caption
            if not last.is_final and last.utterance_id == item.caption.utterance_id:
                self._items[-1] = item
                self.replaced += 1
                return
        if item.caption.is_final:
            while self._finals >= self._max_finals:
                self._room.clear()
                await self._room.wait()
            self._finals += 1
        self._items.append(item)
        self._ready.set()

    def close(self) -> None:
        self._closed = True
        self._ready.set()

    async def get(self) -> SpokenCaption | None:
        """The next caption, or None once closed and drained."""
        while not self._items:
            if self._closed:
                return None
            self._ready.clear()
            await self._ready.wait()
        item = self._items.popleft()
        if item.caption.is_final:
            self._finals -= 1
            self._room.set()
        return item
