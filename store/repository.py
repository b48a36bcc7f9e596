"""The repository: every query the API and the bot make, each method one transaction.

``Repository(sessionmaker)`` is cheap to build; each method opens a session, commits (or rolls
back) and returns plain records (:mod:`store.records`). Foreign exceptions are translated here,
once (:mod:`core.errors`): a broken or refused connection is :class:`StorageUnavailable`
(retryable), a refused write is :class:`ConflictError`.

Times: every method takes an optional ``now``; None means the database clock (``now()``), which
all workers share. Tests pass explicit times to stay deterministic.

Decisions worth knowing (details at each method):

* **Final segments** are upserted on ``(session_id, utterance_id)``. A re-sent final of the same
  utterance (same track) replaces the stored one when anything differs (a retry after an
  ambiguous failure, or a corrected re-decode) and is a no-op when identical; an utterance id
  already used by another track keeps the first row and reports ``CONFLICT``.
* **Usage** is billed per participant track: ``billed_minutes = ceil(audio_seconds / 60)`` per
  row, computed by PostgreSQL (generated columns), totals are sums of per-row billed minutes and
  costs. The bot checkpoints *increments*, so a worker that takes over a session after a crash
  adds to the row instead of overwriting it.
* **Deleting a session** deletes its participants, segments and job; its usage rows stay as
  billing history, detached (``session_id``/``participant_id`` NULL, ``space_id``/``user_id``
  kept), so space and user reports over past months do not change.
* **Search** (``q``) matches the stored ``russian`` tsvector (Russian and English stemming) with
  ``websearch_to_tsquery``, OR a case-insensitive substring (``ILIKE``) for partial words, stop
  words and scripts the parser does not split.
"""

from __future__ import annotations

import json
import secrets
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Final, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import (
    Boolean,
    ColumnElement,
    DateTime,
    Interval,
    Numeric,
    Select,
    and_,
    bindparam,
    case,
    delete,
    func,
    literal,
    literal_column,
    null,
    or_,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.errors import (
    ConflictError,
    InvalidState,
    LimitExceeded,
    NotFound,
    SlugTaken,
    StorageError,
    StorageUnavailable,
)
from store.enums import JobStatus, ParticipantRole, SessionStatus
from store.models import (
    SEARCH_CONFIG,
    Participant,
    Segment,
    Session,
    SpaceQuota,
    TrackUsage,
    TranscriptionJob,
)
from store.money import DEFAULT_CURRENCY, quantize_seconds
from store.notify import JOB_CHANNEL, job_payload
from store.records import (
    FinalSegment,
    JobLease,
    JobRecord,
    LimitCheck,
    LimitReason,
    ParticipantRecord,
    SegmentCursor,
    SegmentRecord,
    SessionCursor,
    SessionRecord,
    SessionUsage,
    SweepResult,
    TranscriptionLimits,
    TranscriptPage,
    UpsertOutcome,
    UsageCheckpoint,
    UsageGroup,
    UsageGroupBy,
    UsageRecord,
    UsageReport,
    UsageTotals,
    WordTiming,
)

__all__ = ["JOB_CHANNEL", "Repository", "SessionWithJob", "new_slug"]

# a session and its transcription job (None when never requested)
SessionWithJob = tuple[SessionRecord, JobRecord | None]

_SLUG_ALPHABET: Final = "abcdefghijkmnpqrstuvwxyz23456789"  # no l, o, 0, 1
_SLUG_LEN: Final = 12
_ACTIVITY_GRANULARITY: Final = timedelta(seconds=5)
_UPSERT_CHUNK: Final = 500
_UNSET: Final = object()
_ENDED_STATES: Final = (SessionStatus.ENDED, SessionStatus.EXPIRED)
_SECONDS: Final = Numeric(14, 3)
# the text search configuration as a SQL constant (see models.SEARCH_CONFIG)
_REGCONFIG: Final[ColumnElement[Any]] = literal_column(f"'{SEARCH_CONFIG}'::regconfig")

_SESSION_COLS = (
    Session.id,
    Session.slug,
    Session.title,
    Session.space_id,
    Session.created_by,
    Session.status,
    Session.language,
    Session.created_at,
    Session.started_at,
    Session.ended_at,
    Session.last_activity_at,
)
_PARTICIPANT_COLS = (
    Participant.id,
    Participant.session_id,
    Participant.identity,
    Participant.name,
    Participant.user_id,
    Participant.role,
    Participant.joined_at,
    Participant.left_at,
)
_SEGMENT_COLS = (
    Segment.id,
    Segment.session_id,
    Segment.utterance_id,
    Segment.participant_id,
    Participant.identity,
    Participant.name,
    Segment.track_sid,
    Segment.speaker_label,
    Segment.text,
    Segment.language,
    Segment.start_ms,
    Segment.end_ms,
    Segment.started_at,
    Segment.ended_at,
    Segment.confidence,
    Segment.model,
)
_USAGE_COLS = (
    TrackUsage.id,
    TrackUsage.session_id,
    TrackUsage.participant_id,
    Participant.identity,
    Participant.name,
    TrackUsage.space_id,
    TrackUsage.user_id,
    TrackUsage.track_sid,
    TrackUsage.model,
    TrackUsage.audio_seconds,
    TrackUsage.speech_seconds,
    TrackUsage.partial_count,
    TrackUsage.final_count,
    TrackUsage.error_count,
    TrackUsage.billed_minutes,
    TrackUsage.cost_per_minute,
    TrackUsage.total_cost,
    TrackUsage.currency,
    TrackUsage.started_at,
    TrackUsage.ended_at,
    TrackUsage.updated_at,
)
_JOB_COLS = (
    TranscriptionJob.id,
    TranscriptionJob.session_id,
    TranscriptionJob.status,
    TranscriptionJob.worker_id,
    TranscriptionJob.lease_expires_at,
    TranscriptionJob.heartbeat_at,
    TranscriptionJob.attempts,
    TranscriptionJob.requested_at,
    TranscriptionJob.claimed_at,
    TranscriptionJob.stopped_at,
    TranscriptionJob.stop_reason,
)
# Postgres error classes that mean "the connection or server is gone, try later"
_UNAVAILABLE_SQLSTATES: Final = ("08", "57P01", "57P02", "57P03", "53300")


_R = TypeVar("_R")
_AnySelect = Select[*tuple[Any, ...]]


def _rec(cls: type[_R], row: Any) -> _R:
    """A record dataclass from a result row whose columns are in the dataclass's field order."""
    return cls(*row)


def new_slug() -> str:
    """A random, URL- and room-name-safe session slug (about 60 bits)."""
    return "".join(secrets.choice(_SLUG_ALPHABET) for _ in range(_SLUG_LEN))


def _ts(now: datetime | None) -> ColumnElement[datetime]:
    if now is None:
        return func.now()
    if now.tzinfo is None:
        raise ValueError("times must be timezone-aware")
    return literal(now, DateTime(timezone=True))


def _interval(delta: timedelta) -> ColumnElement[timedelta]:
    return literal(delta, Interval())


def _sqlstate(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    state = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    return str(state or "")


def _translate(exc: BaseException) -> StorageError | None:
    if isinstance(exc, sa_exc.IntegrityError):
        return ConflictError("the database refused a conflicting write")
    if isinstance(exc, sa_exc.DBAPIError):
        if (
            exc.connection_invalidated
            or isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError)
            or _sqlstate(exc).startswith(_UNAVAILABLE_SQLSTATES)
        ):
            return StorageUnavailable("database unavailable")
        return None
    if isinstance(exc, OSError | TimeoutError | sa_exc.TimeoutError):
        return StorageUnavailable("database unavailable")
    return None


class Repository:
    """Storage operations shared by the API and the bot."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self._sessionmaker = sessionmaker

    @asynccontextmanager
    async def _tx(self) -> AsyncIterator[AsyncSession]:
        try:
            async with self._sessionmaker.begin() as session:
                yield session
        except StorageError:
            raise
        except Exception as exc:
            translated = _translate(exc)
            if translated is None:
                raise
            raise translated from exc

    # -- sessions ------------------------------------------------------------------------------

    async def create_session(
        self,
        *,
        space_id: str,
        created_by: str,
        title: str = "",
        language: str | None = None,
        slug: str | None = None,
        now: datetime | None = None,
    ) -> SessionRecord:
        """Insert a CREATED session. A given ``slug`` that exists raises :class:`SlugTaken`;
        without one a random slug is drawn (and redrawn on the rare collision)."""
        for _ in range(1 if slug is not None else 5):
            candidate = slug if slug is not None else new_slug()
            stmt = (
                pg_insert(Session)
                .values(
                    slug=candidate,
                    title=title,
                    space_id=space_id,
                    created_by=created_by,
                    language=language,
                    created_at=_ts(now),
                    last_activity_at=_ts(now),
                )
                .on_conflict_do_nothing(index_elements=[Session.slug])
                .returning(*_SESSION_COLS)
            )
            async with self._tx() as s:
                row = (await s.execute(stmt)).one_or_none()
            if row is not None:
                return _rec(SessionRecord, row)
        raise SlugTaken("a session with this slug exists")

    async def get_session(self, slug: str) -> SessionRecord | None:
        async with self._tx() as s:
            row = (await s.execute(select(*_SESSION_COLS).where(Session.slug == slug))).first()
        return _rec(SessionRecord, row) if row is not None else None

    async def get_session_by_id(self, session_id: int) -> SessionRecord | None:
        async with self._tx() as s:
            row = (await s.execute(select(*_SESSION_COLS).where(Session.id == session_id))).first()
        return _rec(SessionRecord, row) if row is not None else None

    async def list_sessions(
        self,
        *,
        space_id: str | None = None,
        created_by: str | None = None,
        status: SessionStatus | None = None,
        include_expired: bool = True,
        before: SessionCursor | None = None,
        limit: int = 50,
    ) -> list[SessionRecord]:
        """Sessions newest first; pass the last row as ``before`` for the next page. Served by
        the (space_id | created_by, created_at, id) indexes."""
        stmt = _filter_sessions(
            select(*_SESSION_COLS),
            space_id=space_id,
            created_by=created_by,
            status=status,
            include_expired=include_expired,
            before=before,
        ).limit(limit)
        async with self._tx() as s:
            rows = (await s.execute(stmt)).all()
        return [_rec(SessionRecord, row) for row in rows]

    async def list_sessions_with_jobs(
        self,
        *,
        space_id: str | None = None,
        created_by: str | None = None,
        status: SessionStatus | None = None,
        include_expired: bool = True,
        before: SessionCursor | None = None,
        limit: int = 50,
    ) -> list[SessionWithJob]:
        """:meth:`list_sessions` with each session's job, in one query."""
        stmt = _filter_sessions(
            select(*_SESSION_COLS, *_JOB_COLS).outerjoin(
                TranscriptionJob, TranscriptionJob.session_id == Session.id
            ),
            space_id=space_id,
            created_by=created_by,
            status=status,
            include_expired=include_expired,
            before=before,
        ).limit(limit)
        async with self._tx() as s:
            rows = (await s.execute(stmt)).all()
        return [_session_with_job(row) for row in rows]

    async def get_session_with_job(self, slug: str) -> SessionWithJob | None:
        stmt = (
            select(*_SESSION_COLS, *_JOB_COLS)
            .outerjoin(TranscriptionJob, TranscriptionJob.session_id == Session.id)
            .where(Session.slug == slug)
        )
        async with self._tx() as s:
            row = (await s.execute(stmt)).first()
        return _session_with_job(row) if row is not None else None

    async def update_session(
        self, session_id: int, *, title: str | None = None, language: Any = _UNSET
    ) -> SessionRecord | None:
        """Change the title and/or language (``language=None`` = automatic detection)."""
        values: dict[str, Any] = {}
        if title is not None:
            values["title"] = title
        if language is not _UNSET:
            values["language"] = language
        if not values:
            return await self.get_session_by_id(session_id)
        stmt = (
            update(Session)
            .where(Session.id == session_id)
            .values(**values)
            .returning(*_SESSION_COLS)
        )
        async with self._tx() as s:
            row = (await s.execute(stmt)).first()
        return _rec(SessionRecord, row) if row is not None else None

    async def end_session(
        self, session_id: int, *, reason: str = "session_ended", now: datetime | None = None
    ) -> SessionRecord | None:
        """CREATED/LIVE -> ENDED; also stops its job and closes its open usage rows. Idempotent:
        an ENDED or EXPIRED session is returned unchanged. None if it does not exist."""
        async with self._tx() as s:
            row = (
                await s.execute(
                    update(Session)
                    .where(
                        Session.id == session_id,
                        Session.status.in_([SessionStatus.CREATED, SessionStatus.LIVE]),
                    )
                    .values(status=SessionStatus.ENDED, ended_at=_ts(now))
                    .returning(*_SESSION_COLS)
                )
            ).first()
            if row is None:
                row = (
                    await s.execute(select(*_SESSION_COLS).where(Session.id == session_id))
                ).first()
                return _rec(SessionRecord, row) if row is not None else None
            await self._close_session_work(s, [session_id], reason=reason, now=now)
        return _rec(SessionRecord, row)

    async def delete_session(self, session_id: int, *, now: datetime | None = None) -> bool:
        """Delete a session with its participants, segments and job. Its usage rows remain as
        billing history: closed if still open, detached (session_id/participant_id NULL)."""
        async with self._tx() as s:
            await s.execute(
                update(TrackUsage)
                .where(TrackUsage.session_id == session_id, TrackUsage.ended_at.is_(None))
                .values(ended_at=_ts(now))
            )
            result = await s.execute(
                delete(Session).where(Session.id == session_id).returning(Session.id)
            )
            return result.first() is not None

    async def touch_session(self, session_id: int, *, now: datetime | None = None) -> None:
        """Record activity (the sweeper ends LIVE sessions without any for a while)."""
        async with self._tx() as s:
            await self._touch(s, [session_id], now)

    async def sweep_sessions(
        self,
        *,
        inactive_after: timedelta,
        expire_after: timedelta,
        now: datetime | None = None,
        batch_size: int = 500,
    ) -> SweepResult:
        """The lifecycle sweeper: LIVE sessions without activity (joins, leaves, finals, usage
        checkpoints) for ``inactive_after`` end; CREATED sessions older than ``expire_after``
        expire. Their jobs stop and open usage rows close. ``SKIP LOCKED`` lets several API
        replicas sweep at once; call again while a result is full (``batch_size`` rows)."""
        ts = _ts(now)
        async with self._tx() as s:
            live = (
                select(Session.id)
                .where(
                    Session.status == SessionStatus.LIVE,
                    Session.last_activity_at < ts - _interval(inactive_after),
                )
                .order_by(Session.last_activity_at)
                .limit(batch_size)
                .with_for_update(skip_locked=True)
                .scalar_subquery()
            )
            ended = (
                await s.execute(
                    update(Session)
                    .where(Session.id.in_(live))
                    .values(status=SessionStatus.ENDED, ended_at=ts)
                    .returning(Session.id, Session.slug)
                )
            ).all()
            pending = (
                select(Session.id)
                .where(
                    Session.status == SessionStatus.CREATED,
                    Session.created_at < ts - _interval(expire_after),
                )
                .order_by(Session.created_at)
                .limit(batch_size)
                .with_for_update(skip_locked=True)
                .scalar_subquery()
            )
            expired = (
                await s.execute(
                    update(Session)
                    .where(Session.id.in_(pending))
                    .values(status=SessionStatus.EXPIRED)
                    .returning(Session.id, Session.slug)
                )
            ).all()
            await self._close_session_work(s, [r.id for r in ended], reason="inactive", now=now)
            await self._close_session_work(s, [r.id for r in expired], reason="expired", now=now)
        return SweepResult(ended=[r.slug for r in ended], expired=[r.slug for r in expired])

    async def _close_session_work(
        self, s: AsyncSession, session_ids: Sequence[int], *, reason: str, now: datetime | None
    ) -> None:
        if not session_ids:
            return
        ts = _ts(now)
        await s.execute(
            update(TrackUsage)
            .where(TrackUsage.session_id.in_(session_ids), TrackUsage.ended_at.is_(None))
            .values(ended_at=ts)
        )
        stopped = (
            await s.execute(
                update(TranscriptionJob)
                .where(
                    TranscriptionJob.session_id.in_(session_ids),
                    TranscriptionJob.status != JobStatus.STOPPED,
                )
                .values(
                    status=JobStatus.STOPPED,
                    stopped_at=ts,
                    stop_reason=reason,
                    worker_id=None,
                    lease_expires_at=None,
                )
                .returning(TranscriptionJob.id, TranscriptionJob.session_id)
            )
        ).all()
        await self._notify_jobs(s, "stopped", [(r.id, r.session_id) for r in stopped])

    async def _touch(
        self, s: AsyncSession, session_ids: Iterable[int], now: datetime | None
    ) -> None:
        ids = sorted(set(session_ids))
        if not ids:
            return
        ts = _ts(now)
        # at most one write per session every few seconds: finals of many tracks touch it
        await s.execute(
            update(Session)
            .where(
                Session.id.in_(ids),
                Session.last_activity_at < ts - _interval(_ACTIVITY_GRANULARITY),
            )
            .values(last_activity_at=ts)
        )

    # -- participants --------------------------------------------------------------------------

    async def participant_joined(
        self,
        session_id: int,
        identity: str,
        *,
        name: str | None = None,
        user_id: str | None = None,
        role: ParticipantRole | None = None,
        now: datetime | None = None,
    ) -> ParticipantRecord:
        """Upsert on join (webhook, registration or the bot): insert, or on a rejoin clear
        ``left_at`` and update the given fields (None keeps the stored value; ``joined_at`` stays
        the first join). The first join turns a CREATED session LIVE. Do not call it for the
        bot's own (agent) participant. Raises :class:`NotFound` for an unknown session."""
        ts = _ts(now)
        async with self._tx() as s:
            found = (
                await s.execute(
                    select(Session.id)
                    .where(Session.id == session_id)
                    .with_for_update(key_share=True)
                )
            ).scalar_one_or_none()
            if found is None:
                raise NotFound("session not found")
            stmt = pg_insert(Participant).values(
                session_id=session_id,
                identity=identity,
                name=name or "",
                user_id=user_id,
                role=role or ParticipantRole.GUEST,
                joined_at=ts,
            )
            upsert = stmt.on_conflict_do_update(
                index_elements=[Participant.session_id, Participant.identity],
                set_={
                    "left_at": null(),
                    "name": stmt.excluded.name if name is not None else Participant.name,
                    "user_id": func.coalesce(stmt.excluded.user_id, Participant.user_id),
                    "role": stmt.excluded.role if role is not None else Participant.role,
                },
            ).returning(*_PARTICIPANT_COLS)
            row = (await s.execute(upsert)).one()
            record = _rec(ParticipantRecord, row)
            went_live = (
                await s.execute(
                    update(Session)
                    .where(Session.id == session_id, Session.status == SessionStatus.CREATED)
                    .values(status=SessionStatus.LIVE, started_at=ts, last_activity_at=ts)
                    .returning(Session.id)
                )
            ).first()
            if went_live is None:
                await self._touch(s, [session_id], now)
            if record.user_id is not None:
                # usage opened before the participant registered gets its user for billing
                await s.execute(
                    update(TrackUsage)
                    .where(TrackUsage.participant_id == record.id, TrackUsage.user_id.is_(None))
                    .values(user_id=record.user_id)
                )
        return record

    async def participant_left(
        self, session_id: int, identity: str, *, now: datetime | None = None
    ) -> ParticipantRecord | None:
        """Set ``left_at``; None if the participant is unknown."""
        async with self._tx() as s:
            row = (
                await s.execute(
                    update(Participant)
                    .where(Participant.session_id == session_id, Participant.identity == identity)
                    .values(left_at=_ts(now))
                    .returning(*_PARTICIPANT_COLS)
                )
            ).first()
            if row is not None:
                await self._touch(s, [session_id], now)
        return _rec(ParticipantRecord, row) if row is not None else None

    async def list_participants(self, session_id: int) -> list[ParticipantRecord]:
        stmt = (
            select(*_PARTICIPANT_COLS)
            .where(Participant.session_id == session_id)
            .order_by(Participant.joined_at, Participant.id)
        )
        async with self._tx() as s:
            rows = (await s.execute(stmt)).all()
        return [_rec(ParticipantRecord, row) for row in rows]

    # -- segments ------------------------------------------------------------------------------

    async def upsert_final_segment(
        self, segment: FinalSegment, *, now: datetime | None = None
    ) -> UpsertOutcome:
        return (await self.upsert_final_segments([segment], now=now))[0]

    async def upsert_final_segments(
        self, segments: Sequence[FinalSegment], *, now: datetime | None = None
    ) -> list[UpsertOutcome]:
        """Idempotently persist finals (the bot's live path and its replay of queued finals).

        Keyed on ``(session_id, utterance_id)``: new -> INSERTED; same utterance from the same
        track with different content -> UPDATED (text, words, timings, speaker replaced);
        identical -> UNCHANGED (nothing written); the id already taken by another track ->
        CONFLICT (first row kept); session deleted -> SESSION_MISSING (dropped). Returns one
        outcome per input, in order (repeated keys in one call: the last one wins)."""
        if not segments:
            return []
        for seg in segments:
            if seg.start_ms < 0 or seg.end_ms < seg.start_ms:
                raise ValueError("segment timeline must satisfy 0 <= start_ms <= end_ms")
        latest: dict[tuple[int, str], FinalSegment] = {}
        for seg in segments:
            latest[(seg.session_id, seg.utterance_id)] = seg
        outcomes: dict[tuple[int, str], UpsertOutcome] = {}
        async with self._tx() as s:
            session_ids = sorted({key[0] for key in latest})
            # KEY SHARE: a concurrent delete of the session waits for this transaction
            alive = set(
                (
                    await s.execute(
                        select(Session.id)
                        .where(Session.id.in_(session_ids))
                        .with_for_update(key_share=True)
                    )
                ).scalars()
            )
            pending = [seg for key, seg in latest.items() if key[0] in alive]
            for key in latest:
                if key[0] not in alive:
                    outcomes[key] = UpsertOutcome.SESSION_MISSING
            participant_ids = await self._participant_ids(s, pending)
            for start in range(0, len(pending), _UPSERT_CHUNK):
                chunk = pending[start : start + _UPSERT_CHUNK]
                outcomes.update(await self._upsert_chunk(s, chunk, participant_ids, now))
            await self._touch(s, alive, now)
        return [outcomes[(seg.session_id, seg.utterance_id)] for seg in segments]

    @staticmethod
    async def _participant_ids(
        s: AsyncSession, segments: Sequence[FinalSegment]
    ) -> dict[tuple[int, str], int]:
        keys = {
            (seg.session_id, seg.participant_identity)
            for seg in segments
            if seg.participant_identity is not None
        }
        if not keys:
            return {}
        rows = await s.execute(
            select(Participant.session_id, Participant.identity, Participant.id).where(
                tuple_(Participant.session_id, Participant.identity).in_(sorted(keys))
            )
        )
        return {(r.session_id, r.identity): r.id for r in rows}

    @staticmethod
    async def _upsert_chunk(
        s: AsyncSession,
        chunk: Sequence[FinalSegment],
        participant_ids: dict[tuple[int, str], int],
        now: datetime | None,
    ) -> dict[tuple[int, str], UpsertOutcome]:
        ts = _ts(now)
        rows = [
            {
                "session_id": seg.session_id,
                "participant_id": participant_ids.get((seg.session_id, seg.participant_identity))
                if seg.participant_identity is not None
                else None,
                "utterance_id": seg.utterance_id,
                "track_sid": seg.track_sid,
                "speaker_label": seg.speaker_label,
                "text": seg.text,
                "language": seg.language,
                "start_ms": seg.start_ms,
                "end_ms": seg.end_ms,
                "started_at": seg.started_at,
                "ended_at": seg.ended_at,
                "words": [_word_json(w) for w in seg.words] if seg.words else None,
                "confidence": seg.confidence,
                "model": seg.model,
                "created_at": ts,
                "updated_at": ts,
            }
            for seg in chunk
        ]
        insert_stmt = pg_insert(Segment).values(rows)
        ex = insert_stmt.excluded
        content = (
            "participant_id",
            "speaker_label",
            "text",
            "language",
            "start_ms",
            "end_ms",
            "started_at",
            "ended_at",
            "words",
            "confidence",
            "model",
        )
        new: dict[str, Any] = {col: ex[col] for col in content}
        # a re-send without a known participant keeps the stored link
        new["participant_id"] = func.coalesce(ex.participant_id, Segment.participant_id)
        stmt: Any = insert_stmt.on_conflict_do_update(
            index_elements=[Segment.session_id, Segment.utterance_id],
            set_={**new, "updated_at": ex.updated_at},
            where=and_(
                Segment.track_sid == ex.track_sid,
                tuple_(*(Segment.__table__.c[col] for col in content)).is_distinct_from(
                    tuple_(*(new[col] for col in content))
                ),
            ),
        ).returning(
            Segment.session_id,
            Segment.utterance_id,
            literal_column("(segments.xmax = 0)").label("inserted"),
        )
        result: dict[tuple[int, str], UpsertOutcome] = {}
        for row in await s.execute(stmt):
            result[(row.session_id, row.utterance_id)] = (
                UpsertOutcome.INSERTED if row.inserted else UpsertOutcome.UPDATED
            )
        untouched = [seg for seg in chunk if (seg.session_id, seg.utterance_id) not in result]
        if untouched:
            stored = {
                (r.session_id, r.utterance_id): r.track_sid
                for r in await s.execute(
                    select(Segment.session_id, Segment.utterance_id, Segment.track_sid).where(
                        tuple_(Segment.session_id, Segment.utterance_id).in_(
                            [(seg.session_id, seg.utterance_id) for seg in untouched]
                        )
                    )
                )
            }
            for seg in untouched:
                key = (seg.session_id, seg.utterance_id)
                same_track = stored.get(key) == seg.track_sid
                result[key] = UpsertOutcome.UNCHANGED if same_track else UpsertOutcome.CONFLICT
        return result

    async def transcript_page(
        self,
        session_id: int,
        *,
        q: str | None = None,
        after: SegmentCursor | None = None,
        limit: int = 100,
        include_words: bool = False,
    ) -> TranscriptPage:
        """One page of a session's transcript in timeline order (``start_ms``, then id), keyset
        paginated: pass the returned ``next_cursor`` as ``after``.

        ``q`` filters by full-text search: the stored ``russian`` tsvector (Cyrillic words
        stemmed by the Russian stemmer, ASCII words by the English one) matched with
        ``websearch_to_tsquery`` ("quoted phrases", ``or``, ``-exclusion``), OR the text
        containing ``q`` case-insensitively (partial words, stop words, other scripts).
        Both run over the session's rows, found through (session_id, start_ms, id)."""
        if limit < 1:
            raise ValueError("limit must be positive")
        stmt = self._segment_select(session_id, q=q, include_words=include_words)
        if after is not None:
            stmt = stmt.where(
                tuple_(Segment.start_ms, Segment.id) > tuple_(after.start_ms, after.id)
            )
        stmt = stmt.order_by(Segment.start_ms, Segment.id).limit(limit + 1)
        async with self._tx() as s:
            rows = (await s.execute(stmt)).all()
        items = [_segment(row, include_words) for row in rows[:limit]]
        cursor = None
        if len(rows) > limit:
            cursor = SegmentCursor(items[-1].start_ms, items[-1].id)
        return TranscriptPage(items=items, next_cursor=cursor)

    async def count_segments(self, session_id: int, *, q: str | None = None) -> int:
        stmt = select(func.count()).select_from(Segment).where(Segment.session_id == session_id)
        condition = _search_condition(q)
        if condition is not None:
            stmt = stmt.where(condition)
        async with self._tx() as s:
            return int((await s.execute(stmt)).scalar_one())

    async def iter_segments(
        self, session_id: int, *, batch_size: int = 2000, include_words: bool = False
    ) -> AsyncIterator[SegmentRecord]:
        """All segments of a session in timeline order (exports), fetched in keyset batches."""
        cursor: SegmentCursor | None = None
        while True:
            page = await self.transcript_page(
                session_id, after=cursor, limit=batch_size, include_words=include_words
            )
            for item in page.items:
                yield item
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    @staticmethod
    def _segment_select(session_id: int, *, q: str | None, include_words: bool) -> _AnySelect:
        cols: list[Any] = list(_SEGMENT_COLS)
        if include_words:
            cols.append(Segment.words)
        stmt = (
            select(*cols)
            .select_from(Segment)
            .outerjoin(Participant, Participant.id == Segment.participant_id)
            .where(Segment.session_id == session_id)
        )
        condition = _search_condition(q)
        if condition is not None:
            stmt = stmt.where(condition)
        return stmt

    # -- usage ---------------------------------------------------------------------------------

    async def open_track_usage(
        self,
        *,
        session_id: int,
        participant_identity: str,
        track_sid: str,
        model: str,
        cost_per_minute: Decimal,
        currency: str = DEFAULT_CURRENCY,
        limits: TranscriptionLimits | None = None,
        now: datetime | None = None,
    ) -> UsageRecord:
        """Start billing a track (the bot, when it starts transcribing it).

        With ``limits``, the per-session and per-user concurrent-track limits and the space's
        monthly quota are checked atomically (advisory locks on the session and the user), and
        :class:`LimitExceeded` refuses the track. Re-opening the same track (a worker taking the
        session over) reuses its row: counters continue, the first price stays."""
        if cost_per_minute < 0:
            raise ValueError("cost_per_minute must not be negative")
        async with self._tx() as s:
            session_row = (
                await s.execute(
                    select(Session.space_id, Session.status)
                    .where(Session.id == session_id)
                    .with_for_update(key_share=True)
                )
            ).first()
            if session_row is None:
                raise NotFound("session not found")
            if session_row.status in _ENDED_STATES:
                raise InvalidState("session is not active")
            participant = (
                await s.execute(
                    select(Participant.id, Participant.user_id).where(
                        Participant.session_id == session_id,
                        Participant.identity == participant_identity,
                    )
                )
            ).first()
            if participant is None:
                raise NotFound("participant not found")
            existing = (
                await s.execute(
                    select(TrackUsage.id, TrackUsage.ended_at).where(
                        TrackUsage.session_id == session_id, TrackUsage.track_sid == track_sid
                    )
                )
            ).first()
            if limits is not None and (existing is None or existing.ended_at is not None):
                await s.execute(
                    select(func.pg_advisory_xact_lock(_lock_key(f"session:{session_id}")))
                )
                if participant.user_id is not None:
                    await s.execute(
                        select(func.pg_advisory_xact_lock(_lock_key(f"user:{participant.user_id}")))
                    )
                check = await self._limit_check(
                    s,
                    session_id=session_id,
                    user_id=participant.user_id,
                    space_id=session_row.space_id,
                    limits=limits,
                    now=now,
                )
                if not check.allowed:
                    raise LimitExceeded(check)
            ts = _ts(now)
            stmt = pg_insert(TrackUsage).values(
                session_id=session_id,
                participant_id=participant.id,
                space_id=session_row.space_id,
                user_id=participant.user_id,
                track_sid=track_sid,
                model=model,
                cost_per_minute=cost_per_minute,
                currency=currency,
                started_at=ts,
                updated_at=ts,
            )
            upsert = stmt.on_conflict_do_update(
                index_elements=[TrackUsage.session_id, TrackUsage.track_sid],
                set_={"ended_at": null(), "updated_at": ts, "model": stmt.excluded.model},
            ).returning(TrackUsage.id)
            usage_id = (await s.execute(upsert)).scalar_one()
            await self._touch(s, [session_id], now)
            row = (await s.execute(_usage_select().where(TrackUsage.id == usage_id))).one()
        return _rec(UsageRecord, row)

    async def checkpoint_usage(
        self, checkpoints: Sequence[UsageCheckpoint], *, now: datetime | None = None
    ) -> int:
        """Add each checkpoint's increments to its track's row (``ended`` also closes it);
        returns how many rows were found. Unknown tracks (session deleted) are skipped."""
        if not checkpoints:
            return 0
        for cp in checkpoints:
            if (
                min(cp.audio_seconds, cp.speech_seconds) < 0
                or min(cp.partial_count, cp.final_count, cp.error_count) < 0
            ):
                raise ValueError("usage increments must not be negative")
        ts = _ts(now)
        stmt = (
            update(TrackUsage)
            .where(
                TrackUsage.session_id == bindparam("b_session_id"),
                TrackUsage.track_sid == bindparam("b_track_sid"),
            )
            .values(
                audio_seconds=TrackUsage.audio_seconds + bindparam("b_audio", type_=_SECONDS),
                speech_seconds=TrackUsage.speech_seconds + bindparam("b_speech", type_=_SECONDS),
                partial_count=TrackUsage.partial_count + bindparam("b_partials"),
                final_count=TrackUsage.final_count + bindparam("b_finals"),
                error_count=TrackUsage.error_count + bindparam("b_errors"),
                updated_at=ts,
                ended_at=case(
                    (
                        bindparam("b_ended", type_=Boolean),
                        func.coalesce(TrackUsage.ended_at, ts),
                    ),
                    else_=TrackUsage.ended_at,
                ),
            )
            .returning(TrackUsage.session_id)
        )
        found: list[int] = []
        async with self._tx() as s:
            for cp in checkpoints:
                params = {
                    "b_session_id": cp.session_id,
                    "b_track_sid": cp.track_sid,
                    "b_audio": quantize_seconds(cp.audio_seconds),
                    "b_speech": quantize_seconds(cp.speech_seconds),
                    "b_partials": cp.partial_count,
                    "b_finals": cp.final_count,
                    "b_errors": cp.error_count,
                    "b_ended": cp.ended,
                }
                found.extend(
                    sid for sid in (await s.execute(stmt, params)).scalars() if sid is not None
                )
            await self._touch(s, found, now)
        return len(found)

    async def close_track_usage(
        self, session_id: int, track_sid: str, *, now: datetime | None = None
    ) -> bool:
        """Stop billing a track (unsubscribed, muted for good, participant left)."""
        closing = UsageCheckpoint(session_id=session_id, track_sid=track_sid, ended=True)
        return await self.checkpoint_usage([closing], now=now) == 1

    async def session_usage(self, session_id: int) -> SessionUsage:
        """Usage rows of one session (one per participant track) and their totals."""
        stmt = (
            _usage_select()
            .where(TrackUsage.session_id == session_id)
            .order_by(TrackUsage.started_at, TrackUsage.id)
        )
        async with self._tx() as s:
            rows = [_rec(UsageRecord, row) for row in (await s.execute(stmt)).all()]
        return SessionUsage(rows=rows, totals=_totals_of_rows(rows))

    async def usage_report(
        self,
        *,
        start: datetime,
        end: datetime,
        group_by: UsageGroupBy,
        space_id: str | None = None,
        user_id: str | None = None,
        session_id: int | None = None,
        tz: str = "UTC",
    ) -> UsageReport:
        """Usage of tracks that started in ``[start, end)``, filtered by space, user and/or
        session, grouped by day (in ``tz``), participant, user, session or space. Each group and
        the report's totals (per currency) sum per-track billed minutes and costs."""
        if start.tzinfo is None or end.tzinfo is None:
            raise ValueError("start and end must be timezone-aware")
        if end <= start:
            raise ValueError("end must be after start")
        try:
            ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError("unknown time zone") from exc
        keys: list[Any]
        if group_by is UsageGroupBy.DAY:
            # rendered inline (quoted) so SELECT and GROUP BY carry the very same expression
            zone: Any = bindparam("tz", tz, literal_execute=True)
            keys = [func.date(func.timezone(zone, TrackUsage.started_at)).label("day")]
        elif group_by is UsageGroupBy.USER:
            keys = [TrackUsage.user_id]
        elif group_by is UsageGroupBy.SPACE:
            keys = [TrackUsage.space_id]
        elif group_by is UsageGroupBy.SESSION:
            keys = [TrackUsage.session_id, Session.slug, Session.title]
        else:
            keys = [
                TrackUsage.participant_id,
                Participant.identity,
                Participant.name,
                TrackUsage.session_id,
                Session.slug,
                Session.title,
            ]
        aggregates = (
            func.count().label("tracks"),
            func.sum(TrackUsage.audio_seconds).label("audio_seconds"),
            func.sum(TrackUsage.speech_seconds).label("speech_seconds"),
            func.sum(TrackUsage.partial_count).label("partial_count"),
            func.sum(TrackUsage.final_count).label("final_count"),
            func.sum(TrackUsage.error_count).label("error_count"),
            func.sum(TrackUsage.billed_minutes).label("billed_minutes"),
            func.sum(TrackUsage.total_cost).label("total_cost"),
        )
        stmt = select(*keys, TrackUsage.currency, *aggregates).select_from(TrackUsage)
        if group_by in (UsageGroupBy.SESSION, UsageGroupBy.PARTICIPANT):
            stmt = stmt.outerjoin(Session, Session.id == TrackUsage.session_id)
        if group_by is UsageGroupBy.PARTICIPANT:
            stmt = stmt.outerjoin(Participant, Participant.id == TrackUsage.participant_id)
        stmt = stmt.where(TrackUsage.started_at >= start, TrackUsage.started_at < end)
        if space_id is not None:
            stmt = stmt.where(TrackUsage.space_id == space_id)
        if user_id is not None:
            stmt = stmt.where(TrackUsage.user_id == user_id)
        if session_id is not None:
            stmt = stmt.where(TrackUsage.session_id == session_id)
        stmt = stmt.group_by(*keys, TrackUsage.currency).order_by(
            *(k.asc().nulls_last() for k in keys), TrackUsage.currency
        )
        async with self._tx() as s:
            rows = (await s.execute(stmt)).all()
        groups = [_usage_group(group_by, row) for row in rows]
        return UsageReport(
            group_by=group_by,
            start=start,
            end=end,
            groups=groups,
            totals=_sum_totals(g.totals for g in groups),
        )

    # -- limits and quotas ---------------------------------------------------------------------

    async def check_transcription_allowed(
        self,
        *,
        session_id: int,
        limits: TranscriptionLimits,
        user_id: str | None = None,
        now: datetime | None = None,
    ) -> LimitCheck:
        """Would one more track be allowed (e.g. before ``POST .../transcription/start``)?
        Advisory: :meth:`open_track_usage` re-checks atomically."""
        async with self._tx() as s:
            space_id = (
                await s.execute(select(Session.space_id).where(Session.id == session_id))
            ).scalar_one_or_none()
            if space_id is None:
                raise NotFound("session not found")
            return await self._limit_check(
                s, session_id=session_id, user_id=user_id, space_id=space_id, limits=limits, now=now
            )

    async def monthly_minutes_used(self, space_id: str, *, now: datetime | None = None) -> int:
        """Billed minutes of tracks of ``space_id`` started in the current UTC calendar month."""
        async with self._tx() as s:
            return int((await s.execute(_month_minutes(space_id, _ts(now)))).scalar_one())

    async def set_space_quota(
        self, space_id: str, monthly_minutes: int | None, *, now: datetime | None = None
    ) -> None:
        """Override the default monthly quota of one space (None = unlimited)."""
        if monthly_minutes is not None and monthly_minutes < 0:
            raise ValueError("monthly_minutes must not be negative")
        stmt = pg_insert(SpaceQuota).values(
            space_id=space_id, monthly_minutes=monthly_minutes, updated_at=_ts(now)
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=[SpaceQuota.space_id],
            set_={"monthly_minutes": stmt.excluded.monthly_minutes, "updated_at": _ts(now)},
        )
        async with self._tx() as s:
            await s.execute(stmt)

    async def clear_space_quota(self, space_id: str) -> None:
        """Back to the default quota."""
        async with self._tx() as s:
            await s.execute(delete(SpaceQuota).where(SpaceQuota.space_id == space_id))

    async def effective_quota(self, space_id: str, *, default: int | None) -> int | None:
        """The space's override if it has one, else ``default`` (None = unlimited)."""
        async with self._tx() as s:
            row = (
                await s.execute(
                    select(SpaceQuota.monthly_minutes).where(SpaceQuota.space_id == space_id)
                )
            ).first()
        return default if row is None else row.monthly_minutes

    @staticmethod
    async def _limit_check(
        s: AsyncSession,
        *,
        session_id: int,
        user_id: str | None,
        space_id: str,
        limits: TranscriptionLimits,
        now: datetime | None,
    ) -> LimitCheck:
        ts = _ts(now)
        fresh = TrackUsage.updated_at > ts - _interval(limits.stale_after)
        active = and_(TrackUsage.ended_at.is_(None), fresh)
        session_tracks = (
            select(func.count())
            .select_from(TrackUsage)
            .where(TrackUsage.session_id == session_id, active)
            .scalar_subquery()
        )
        user_tracks: Any = literal(None)
        if user_id is not None:
            user_tracks = (
                select(func.count())
                .select_from(TrackUsage)
                .where(TrackUsage.user_id == user_id, active)
                .scalar_subquery()
            )
        override = (
            select(SpaceQuota.monthly_minutes, literal(True).label("present"))
            .where(SpaceQuota.space_id == space_id)
            .subquery()
        )
        row = (
            await s.execute(
                select(
                    session_tracks.label("session_tracks"),
                    user_tracks.label("user_tracks"),
                    _month_minutes(space_id, ts).scalar_subquery().label("used"),
                    select(override.c.monthly_minutes).scalar_subquery().label("quota"),
                    select(override.c.present).scalar_subquery().label("has_override"),
                )
            )
        ).one()
        quota = row.quota if row.has_override else limits.monthly_minutes_quota
        used = int(row.used)
        reason: LimitReason | None = None
        if (
            limits.max_tracks_per_session is not None
            and row.session_tracks >= limits.max_tracks_per_session
        ):
            reason = LimitReason.SESSION_TRACKS
        elif (
            limits.max_tracks_per_user is not None
            and row.user_tracks is not None
            and row.user_tracks >= limits.max_tracks_per_user
        ):
            reason = LimitReason.USER_TRACKS
        elif quota is not None and used >= quota:
            reason = LimitReason.MONTHLY_QUOTA
        return LimitCheck(
            reason=reason,
            session_tracks=int(row.session_tracks),
            user_tracks=None if row.user_tracks is None else int(row.user_tracks),
            used_minutes=used,
            quota_minutes=quota,
        )

    # -- transcription jobs --------------------------------------------------------------------

    async def request_transcription(
        self, session_id: int, *, now: datetime | None = None
    ) -> JobRecord:
        """Ask for a bot in the session's room: creates the job or re-requests a stopped one,
        and ``NOTIFY``s workers on commit. A job already requested or running is returned as
        is (a requested one is re-announced). :class:`InvalidState` for an ended session."""
        ts = _ts(now)
        async with self._tx() as s:
            session_row = (
                await s.execute(
                    select(Session.slug, Session.status)
                    .where(Session.id == session_id)
                    .with_for_update(key_share=True)
                )
            ).first()
            if session_row is None:
                raise NotFound("session not found")
            if session_row.status in _ENDED_STATES:
                raise InvalidState("session is not active")
            stmt = pg_insert(TranscriptionJob).values(
                session_id=session_id, status=JobStatus.REQUESTED, requested_at=ts
            )
            upsert = stmt.on_conflict_do_update(
                index_elements=[TranscriptionJob.session_id],
                set_={
                    "status": JobStatus.REQUESTED,
                    "requested_at": ts,
                    "worker_id": null(),
                    "lease_expires_at": null(),
                    "stopped_at": null(),
                    "stop_reason": null(),
                },
                where=TranscriptionJob.status == JobStatus.STOPPED,
            ).returning(*_JOB_COLS)
            row = (await s.execute(upsert)).first()
            if row is None:
                row = (
                    await s.execute(
                        select(*_JOB_COLS).where(TranscriptionJob.session_id == session_id)
                    )
                ).one()
            job = _rec(JobRecord, row)
            if job.status == JobStatus.REQUESTED:
                await self._notify_jobs(s, "requested", [(job.id, session_id)], session_row.slug)
        return job

    async def stop_transcription(
        self, session_id: int, *, reason: str = "stopped", now: datetime | None = None
    ) -> JobRecord | None:
        """Stop the session's job (the API's ``.../transcription/stop``). The worker learns it
        from the ``stopped`` notification or, at the latest, its next failed heartbeat."""
        async with self._tx() as s:
            row = (
                await s.execute(
                    update(TranscriptionJob)
                    .where(
                        TranscriptionJob.session_id == session_id,
                        TranscriptionJob.status != JobStatus.STOPPED,
                    )
                    .values(
                        status=JobStatus.STOPPED,
                        stopped_at=_ts(now),
                        stop_reason=reason,
                        worker_id=None,
                        lease_expires_at=None,
                    )
                    .returning(*_JOB_COLS)
                )
            ).first()
            if row is None:
                row = (
                    await s.execute(
                        select(*_JOB_COLS).where(TranscriptionJob.session_id == session_id)
                    )
                ).first()
                return _rec(JobRecord, row) if row is not None else None
            job = _rec(JobRecord, row)
            await self._notify_jobs(s, "stopped", [(job.id, session_id)])
        return job

    async def get_job(self, session_id: int) -> JobRecord | None:
        async with self._tx() as s:
            row = (
                await s.execute(select(*_JOB_COLS).where(TranscriptionJob.session_id == session_id))
            ).first()
        return _rec(JobRecord, row) if row is not None else None

    async def claim_job(
        self,
        worker_id: str,
        *,
        lease_for: timedelta = timedelta(seconds=30),
        now: datetime | None = None,
    ) -> JobLease | None:
        """Take one job: the oldest REQUESTED, else a RUNNING one whose lease expired (its
        worker died). ``FOR UPDATE SKIP LOCKED`` makes concurrent claims take different jobs.
        The job's ``attempts`` grows by one and fences the lease (see :class:`JobLease`)."""
        ts = _ts(now)
        requested = (
            select(TranscriptionJob.id)
            .where(TranscriptionJob.status == JobStatus.REQUESTED)
            .order_by(TranscriptionJob.requested_at, TranscriptionJob.id)
        )
        expired = (
            select(TranscriptionJob.id)
            .where(
                TranscriptionJob.status == JobStatus.RUNNING,
                TranscriptionJob.lease_expires_at < ts,
            )
            .order_by(TranscriptionJob.lease_expires_at, TranscriptionJob.id)
        )
        async with self._tx() as s:
            for candidates in (requested, expired):
                job_id = (
                    await s.execute(candidates.limit(1).with_for_update(skip_locked=True))
                ).scalar_one_or_none()
                if job_id is None:
                    continue
                row = (
                    await s.execute(
                        update(TranscriptionJob)
                        .where(
                            TranscriptionJob.id == job_id,
                            TranscriptionJob.session_id == Session.id,
                        )
                        .values(
                            status=JobStatus.RUNNING,
                            worker_id=worker_id,
                            lease_expires_at=ts + _interval(lease_for),
                            heartbeat_at=ts,
                            claimed_at=ts,
                            attempts=TranscriptionJob.attempts + 1,
                        )
                        .returning(
                            TranscriptionJob.id,
                            TranscriptionJob.session_id,
                            Session.slug,
                            TranscriptionJob.attempts,
                            TranscriptionJob.lease_expires_at,
                        )
                    )
                ).one()
                return JobLease(
                    job_id=row.id,
                    session_id=row.session_id,
                    session_slug=row.slug,
                    worker_id=worker_id,
                    attempt=row.attempts,
                    lease_expires_at=row.lease_expires_at,
                )
        return None

    async def heartbeat(
        self,
        lease: JobLease,
        *,
        lease_for: timedelta = timedelta(seconds=30),
        now: datetime | None = None,
    ) -> bool:
        """Renew the lease if this worker still holds the job (same worker and attempt, still
        RUNNING), even if it expired meanwhile but nobody took it. False: the job was reclaimed
        or stopped; the worker must leave the room."""
        ts = _ts(now)
        async with self._tx() as s:
            row = (
                await s.execute(
                    update(TranscriptionJob)
                    .where(*_owned(lease))
                    .values(lease_expires_at=ts + _interval(lease_for), heartbeat_at=ts)
                    .returning(TranscriptionJob.id)
                )
            ).first()
        return row is not None

    async def release_job(self, lease: JobLease, *, now: datetime | None = None) -> bool:
        """Give the job back to the queue (graceful drain): REQUESTED again, announced, so
        another worker joins the room. False if this lease no longer holds it."""
        async with self._tx() as s:
            row = (
                await s.execute(
                    update(TranscriptionJob)
                    .where(*_owned(lease))
                    .values(status=JobStatus.REQUESTED, worker_id=None, lease_expires_at=None)
                    .returning(TranscriptionJob.id)
                )
            ).first()
            if row is not None:
                await self._notify_jobs(
                    s, "requested", [(lease.job_id, lease.session_id)], lease.session_slug
                )
        return row is not None

    async def finish_job(
        self, lease: JobLease, *, reason: str = "finished", now: datetime | None = None
    ) -> bool:
        """The worker is done (room finished): STOPPED. False if this lease no longer holds it."""
        async with self._tx() as s:
            row = (
                await s.execute(
                    update(TranscriptionJob)
                    .where(*_owned(lease))
                    .values(
                        status=JobStatus.STOPPED,
                        worker_id=None,
                        lease_expires_at=None,
                        stopped_at=_ts(now),
                        stop_reason=reason,
                    )
                    .returning(TranscriptionJob.id)
                )
            ).first()
        return row is not None

    async def _notify_jobs(
        self,
        s: AsyncSession,
        event: str,
        jobs: Sequence[tuple[int, int]],
        slug: str | None = None,
    ) -> None:
        """``pg_notify`` per job; delivered when the surrounding transaction commits."""
        if not jobs:
            return
        slugs: dict[int, str] = {}
        if slug is None:
            rows = await s.execute(
                select(Session.id, Session.slug).where(Session.id.in_([sid for _, sid in jobs]))
            )
            slugs = {r.id: r.slug for r in rows}
        for job_id, session_id in jobs:
            payload = job_payload(event, job_id, session_id, slug or slugs.get(session_id, ""))
            await s.execute(select(func.pg_notify(JOB_CHANNEL, payload)))


# -- helpers ---------------------------------------------------------------------------------


def _filter_sessions(
    stmt: _AnySelect,
    *,
    space_id: str | None,
    created_by: str | None,
    status: SessionStatus | None,
    include_expired: bool,
    before: SessionCursor | None,
) -> _AnySelect:
    if space_id is not None:
        stmt = stmt.where(Session.space_id == space_id)
    if created_by is not None:
        stmt = stmt.where(Session.created_by == created_by)
    if status is not None:
        stmt = stmt.where(Session.status == status)
    if not include_expired:
        stmt = stmt.where(Session.status != SessionStatus.EXPIRED)
    if before is not None:
        stmt = stmt.where(
            tuple_(Session.created_at, Session.id) < tuple_(before.created_at, before.id)
        )
    return stmt.order_by(Session.created_at.desc(), Session.id.desc())


def _session_with_job(row: Any) -> SessionWithJob:
    n = len(_SESSION_COLS)
    session = _rec(SessionRecord, row[:n])
    job = _rec(JobRecord, row[n:]) if row[n] is not None else None
    return session, job


def _lock_key(name: str) -> ColumnElement[int]:
    return func.hashtextextended(literal(f"transcriber:{name}"), 0)


def _owned(lease: JobLease) -> tuple[ColumnElement[bool], ...]:
    return (
        TranscriptionJob.id == lease.job_id,
        TranscriptionJob.worker_id == lease.worker_id,
        TranscriptionJob.attempts == lease.attempt,
        TranscriptionJob.status == JobStatus.RUNNING,
    )


def _month_minutes(space_id: str, ts: ColumnElement[datetime]) -> Select[int]:
    month = func.date_trunc("month", ts, "UTC")
    return select(func.coalesce(func.sum(TrackUsage.billed_minutes), 0)).where(
        TrackUsage.space_id == space_id,
        TrackUsage.started_at >= month,
        TrackUsage.started_at < month + text("interval '1 month'"),
    )


def _search_condition(q: str | None) -> ColumnElement[bool] | None:
    if q is None or not q.strip():
        return None
    q = q.strip()
    query = func.websearch_to_tsquery(_REGCONFIG, q)
    return or_(Segment.search_vector.op("@@")(query), Segment.text.icontains(q, autoescape=True))


def _word_json(word: WordTiming) -> dict[str, Any]:
    return {
        "word": word.word,
        "start_ms": word.start_ms,
        "end_ms": word.end_ms,
        "probability": word.probability,
    }


def _segment(row: Any, include_words: bool) -> SegmentRecord:
    words: tuple[WordTiming, ...] | None = None
    if include_words:
        raw = row.words
        if isinstance(raw, str):  # defensive: a driver without the JSON codec
            raw = json.loads(raw)
        if raw is not None:
            words = tuple(
                WordTiming(
                    word=w["word"],
                    start_ms=int(w["start_ms"]),
                    end_ms=int(w["end_ms"]),
                    probability=w.get("probability"),
                )
                for w in raw
            )
        return replace(_rec(SegmentRecord, row[:-1]), words=words)
    return _rec(SegmentRecord, row)


def _usage_select() -> _AnySelect:
    return (
        select(*_USAGE_COLS)
        .select_from(TrackUsage)
        .outerjoin(Participant, Participant.id == TrackUsage.participant_id)
    )


def _usage_group(group_by: UsageGroupBy, row: Any) -> UsageGroup:
    totals = UsageTotals(
        currency=row.currency,
        tracks=int(row.tracks),
        audio_seconds=row.audio_seconds,
        speech_seconds=row.speech_seconds,
        partial_count=int(row.partial_count),
        final_count=int(row.final_count),
        error_count=int(row.error_count),
        billed_minutes=int(row.billed_minutes),
        total_cost=row.total_cost,
    )
    if group_by is UsageGroupBy.DAY:
        return UsageGroup(totals=totals, day=row.day)
    if group_by is UsageGroupBy.USER:
        return UsageGroup(totals=totals, user_id=row.user_id)
    if group_by is UsageGroupBy.SPACE:
        return UsageGroup(totals=totals, space_id=row.space_id)
    group = UsageGroup(
        totals=totals, session_id=row.session_id, session_slug=row.slug, session_title=row.title
    )
    if group_by is UsageGroupBy.PARTICIPANT:
        group = replace(
            group,
            participant_id=row.participant_id,
            participant_identity=row.identity,
            participant_name=row.name,
        )
    return group


def _totals_of_rows(rows: Sequence[UsageRecord]) -> list[UsageTotals]:
    return _sum_totals(
        UsageTotals(
            currency=r.currency,
            tracks=1,
            audio_seconds=r.audio_seconds,
            speech_seconds=r.speech_seconds,
            partial_count=r.partial_count,
            final_count=r.final_count,
            error_count=r.error_count,
            billed_minutes=r.billed_minutes,
            total_cost=r.total_cost,
        )
        for r in rows
    )


def _sum_totals(items: Iterable[UsageTotals]) -> list[UsageTotals]:
    acc: dict[str, list[Any]] = defaultdict(
        lambda: [0, Decimal(0), Decimal(0), 0, 0, 0, 0, Decimal(0)]
    )
    for t in items:
        a = acc[t.currency]
        a[0] += t.tracks
        a[1] += t.audio_seconds
        a[2] += t.speech_seconds
        a[3] += t.partial_count
        a[4] += t.final_count
        a[5] += t.error_count
        a[6] += t.billed_minutes
        a[7] += t.total_cost
    return [UsageTotals(currency, *acc[currency]) for currency in sorted(acc)]
