"""Webhooks like LiveKit's: a JSON ``WebhookEvent`` POSTed as ``application/webhook+json``.

The ``Authorization`` header carries a JWT signed with the API secret whose ``sha256`` claim is
the base64 SHA-256 of the body, so ``livekit.api.WebhookReceiver`` accepts it. Events go out in
order from one bounded queue; when the queue is full new events are dropped and counted.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
import time
import warnings

import aiohttp
import jwt
from google.protobuf import json_format
from livekit.protocol import models, webhook

from . import ids

logger = logging.getLogger("devserver")

_ATTEMPTS = 3
_TOKEN_TTL_S = 600


def sign_webhook(body: str, api_key: str, api_secret: str) -> str:
    """The ``Authorization`` value for ``body``: a JWT with its SHA-256 as ``sha256``."""
    digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
    now = int(time.time())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", jwt.warnings.InsecureKeyLengthWarning)
        return jwt.encode(
            {"iss": api_key, "nbf": now - 1, "exp": now + _TOKEN_TTL_S, "sha256": digest},
            api_secret,
            algorithm="HS256",
        )


class WebhookNotifier:
    """Delivers events to the configured URLs from a background task."""

    def __init__(
        self,
        urls: tuple[str, ...],
        *,
        api_key: str,
        api_secret: str,
        queue_size: int,
        timeout_s: float,
    ) -> None:
        self._urls = urls
        self._api_key = api_key
        self._api_secret = api_secret
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._queue: asyncio.Queue[str] = asyncio.Queue(queue_size)
        self._task: asyncio.Task[None] | None = None
        self.dropped_events = 0
        self.failed_deliveries = 0

    def notify(
        self,
        event: str,
        room: models.Room,
        *,
        participant: models.ParticipantInfo | None = None,
        track: models.TrackInfo | None = None,
    ) -> None:
        if not self._urls:
            return
        message = webhook.WebhookEvent(
            event=event, room=room, id=ids.new_sid(ids.EVENT_PREFIX), created_at=int(time.time())
        )
        if participant is not None:
            message.participant.CopyFrom(participant)
        if track is not None:
            message.track.CopyFrom(track)
        body = json_format.MessageToJson(message, indent=None)
        try:
            self._queue.put_nowait(body)
        except asyncio.QueueFull:
            self.dropped_events += 1
            logger.warning("webhook queue full, event dropped", extra={"event": event})

    async def start(self) -> None:
        if self._urls and self._task is None:
            self._task = asyncio.create_task(self._deliver_all(), name="webhooks")

    async def stop(self, *, drain_timeout_s: float = 2.0) -> None:
        """Deliver what is queued (for a bounded time), then stop."""
        if self._task is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), drain_timeout_s)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def _deliver_all(self) -> None:
        async with aiohttp.ClientSession(timeout=self._timeout) as session:
            while True:
                body = await self._queue.get()
                try:
                    for url in self._urls:
                        await self._deliver(session, url, body)
                finally:
                    self._queue.task_done()

    async def _deliver(self, session: aiohttp.ClientSession, url: str, body: str) -> None:
        headers = {
            "Content-Type": "application/webhook+json",
            "Authorization": sign_webhook(body, self._api_key, self._api_secret),
        }
        for attempt in range(_ATTEMPTS):
            try:
                async with session.post(url, data=body.encode(), headers=headers) as response:
                    if response.status < 500:
                        if response.status >= 400:
                            logger.warning(
                                "webhook receiver refused an event",
                                extra={"status": response.status},
                            )
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.2 * 2**attempt)
        self.failed_deliveries += 1
        logger.warning("webhook delivery failed", extra={"attempts": _ATTEMPTS})
