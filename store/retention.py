"""Retention: how long a space keeps transcripts, and the purge of what has outlived it.

A space's policy (``space_retention``) keeps transcripts ``transcript_days`` days after a
session ends (no row, or NULL days: forever). :meth:`RetentionStore.purge_batch` deletes what
has expired in small transactions, so a purge never holds long locks or a long transaction:

1. up to ``batch_size`` segments of expired sessions (rows locked ``SKIP LOCKED``: several
   sweepers share the work);
2. once an expired session has no segment left, its remaining text: the participants' display
   names and the session's title are blanked and ``transcript_purged_at`` is set (the session,
   its participants' identities and its usage rows stay: billing, quotas and usage reports by
   session or participant are unchanged). A late replay of a final into a purged session is
   dropped (``TranscriptStore.upsert_final_segments``).

What billing needs stays in ``track_usage`` (no text there: seconds, counts, prices, identities).

Audio: the bot keeps the audio of diarized tracks for the after-meeting pass
(``store.recordings``); ``recording_days`` keeps it that many days after it was recorded (NULL:
deleted as soon as the pass is done). The files are on the bots' disks, so the bots enforce it
(``bot.final_diarization``): expired rows -> files deleted -> rows removed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import ColumnElement, and_, delete, exists, select, text, update

from store.base import StoreBase, sql_time, upsert_space_row
from store.models import Participant, Segment, Session, SpaceRetention

__all__ = ["PurgeBatch", "RetentionStore"]

PURGE_BATCH: Final = 1000


@dataclass(frozen=True, slots=True)
class PurgeBatch:
    segments: int  # segments deleted
    sessions: int  # sessions whose remaining text was blanked (purge complete)

    @property
    def empty(self) -> bool:
        return self.segments == 0 and self.sessions == 0


def _expired(now: datetime | None) -> ColumnElement[bool]:
    """Sessions of a space with a policy that ended more than ``transcript_days`` ago and still
    hold text (the partial index ``ix_sessions_unpurged_space_id_ended_at`` serves this)."""
    return and_(
        Session.transcript_purged_at.is_(None),
        Session.ended_at.is_not(None),
        exists().where(
            SpaceRetention.space_id == Session.space_id,
            SpaceRetention.transcript_days.is_not(None),
            Session.ended_at
            < sql_time(now) - SpaceRetention.transcript_days * text("interval '1 day'"),
        ),
    )


class RetentionStore(StoreBase):
    """Per-space retention policies and the batched purge of expired transcripts."""

    async def policy(self, space_id: str) -> int | None:
        """The space's ``transcript_days`` (None: kept forever)."""
        async with self._read() as conn:
            row = (
                await conn.execute(
                    select(SpaceRetention.transcript_days).where(
                        SpaceRetention.space_id == space_id
                    )
                )
            ).first()
        return None if row is None else row.transcript_days

    async def recording_policy(self, space_id: str) -> int | None:
        """The space's ``recording_days`` (None: audio deleted right after the pass)."""
        async with self._read() as conn:
            row = (
                await conn.execute(
                    select(SpaceRetention.recording_days).where(SpaceRetention.space_id == space_id)
                )
            ).first()
        return None if row is None else row.recording_days

    async def set_policy(
        self,
        space_id: str,
        transcript_days: int | None,
        *,
        recording_days: int | None = None,
        now: datetime | None = None,
    ) -> None:
        """Keep the space's transcripts ``transcript_days`` after a session ends (None: forever)
        and its track recordings ``recording_days`` (None: only until the after-meeting pass)."""
        for days in (transcript_days, recording_days):
            if days is not None and days < 1:
                raise ValueError("retention days must be at least 1")
        values = {"transcript_days": transcript_days, "recording_days": recording_days}
        stmt = upsert_space_row(SpaceRetention, space_id, values, now)
        async with self._tx() as s:
            await s.execute(stmt)

    async def purge_batch(
        self, *, now: datetime | None = None, batch_size: int = PURGE_BATCH
    ) -> PurgeBatch:
        """One step of the purge (see the module docstring): a transaction deleting up to
        ``batch_size`` segments of expired sessions, then one finishing up to ``batch_size``
        sessions left without segments. Call until it returns an empty batch."""
        if batch_size < 1:
            raise ValueError("batch_size must be positive")
        expired_sessions = select(Session.id).where(_expired(now))
        victims = (
            select(Segment.id)
            .where(Segment.session_id.in_(expired_sessions))
            .limit(batch_size)
            .with_for_update(skip_locked=True)
        )
        async with self._tx() as s:
            result = await s.execute(
                delete(Segment)
                .where(Segment.id.in_(victims.scalar_subquery()))
                .returning(Segment.id)
            )
            deleted = len(result.all())
        finished = 0
        if deleted < batch_size:
            finished = await self._finish_sessions(now, batch_size)
        return PurgeBatch(segments=deleted, sessions=finished)

    async def _finish_sessions(self, now: datetime | None, batch_size: int) -> int:
        async with self._tx() as s:
            ids: list[Any] = list(
                (
                    await s.execute(
                        select(Session.id)
                        .where(
                            _expired(now),
                            ~exists().where(Segment.session_id == Session.id),
                        )
                        .order_by(Session.ended_at)
                        .limit(batch_size)
                        .with_for_update(skip_locked=True)
                    )
                ).scalars()
            )
            if not ids:
                return 0
            await s.execute(
                update(Participant)
                .where(Participant.session_id.in_(ids), Participant.name != "")
                .values(name="")
            )
            await s.execute(
                update(Session)
                .where(Session.id.in_(ids))
                .values(title="", transcript_purged_at=sql_time(now))
            )
        return len(ids)
