"""LiveKit webhook events already handled, so a replayed delivery changes nothing.

A signed webhook stays valid until its token expires (livekit-server signs for minutes; anyone
who captured one could resend it until then). :meth:`LiveKitEventStore.remember` records the event
id until that moment, with a unique key: the first delivery of an id wins, every later one is
recognised. The API's lifecycle sweeper deletes expired ids (:meth:`LiveKitEventStore.sweep`).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete
from sqlalchemy.dialects.postgresql import insert as pg_insert

from store.base import StoreBase, sql_time
from store.models import WebhookEvent

__all__ = ["LiveKitEventStore"]


class LiveKitEventStore(StoreBase):
    """Webhook event ids, each method one transaction."""

    async def remember(
        self, event_id: str, *, expires_at: datetime, now: datetime | None = None
    ) -> bool:
        """Record ``event_id`` until ``expires_at``; False when it is already recorded (a
        replay or a concurrent duplicate delivery)."""
        stmt = (
            pg_insert(WebhookEvent)
            .values(event_id=event_id, received_at=sql_time(now), expires_at=expires_at)
            .on_conflict_do_nothing(index_elements=[WebhookEvent.event_id])
            .returning(WebhookEvent.event_id)
        )
        async with self._tx() as s:
            return (await s.execute(stmt)).scalar_one_or_none() is not None

    async def forget(self, event_id: str) -> None:
        """Drop ``event_id`` (its handling failed: LiveKit's retry must be handled)."""
        async with self._tx() as s:
            await s.execute(delete(WebhookEvent).where(WebhookEvent.event_id == event_id))

    async def sweep(self, *, now: datetime | None = None) -> int:
        """Delete ids whose signatures have expired; returns how many."""
        async with self._tx() as s:
            result = await s.execute(
                delete(WebhookEvent)
                .where(WebhookEvent.expires_at < sql_time(now))
                .returning(WebhookEvent.event_id)
            )
            return len(result.all())
