"""Reads the API needs that ``store.repository`` does not offer, over the storage models.

Kept here (not in ``api/db``, which the storage side owns); the storage side may fold them into
the repository:

* :func:`space_quota_override`: whether a space has its own quota row, and its value
  (``Repository.effective_quota`` folds "no row" and the default together, so the API could not
  say where an effective quota comes from).
* :class:`TranscriptReader`: the transcript page (the API's hottest read) in ONE statement on
  one pooled connection without a transaction: the session by slug (for the space check) with
  a LATERAL page of its segments, from statements built once. Measured on the benchmark data,
  the repository's ``get_session_with_job`` + ``transcript_page`` cost 1.35 ms of CPU per page
  (two ORM transactions: BEGIN/ping/ROLLBACK + BEGIN/query/COMMIT twice, statements rebuilt per
  call); this costs 0.45 ms, which is what lets one API process serve >= 500 pages/s. Search
  (``q``) stays on the repository (its match expression is private there).
* :class:`UsageReader`: ``Repository.usage_report`` for one space (optionally one user), UTC
  days, from statements built once per grouping and executed without a transaction: 0.27 ms of
  CPU per report instead of 0.87 ms (the repository rebuilds a 30-element statement per call).

Both readers have contract tests (``tests/integration/api``) asserting they return exactly what
the repository returns, so the two cannot drift apart unnoticed.

Connection failures are translated to :class:`core.errors.StorageUnavailable` like the
repository does.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Select, bindparam, func, literal_column, select, true, tuple_
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from core.errors import StorageUnavailable
from store.models import Participant, Segment, Session, SpaceQuota, TrackUsage
from store.records import (
    SegmentCursor,
    SegmentRecord,
    SessionRecord,
    TranscriptPage,
    UsageGroup,
    UsageGroupBy,
    UsageReport,
    UsageTotals,
)

_UNAVAILABLE = (OSError, TimeoutError, sa_exc.OperationalError, sa_exc.InterfaceError)


@asynccontextmanager
async def _read(sessionmaker: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    try:
        async with sessionmaker() as db:
            yield db
    except _UNAVAILABLE as exc:
        raise StorageUnavailable("database unavailable") from exc


async def space_quota_override(
    sessionmaker: async_sessionmaker[AsyncSession], space_id: str
) -> tuple[bool, int | None]:
    """``(True, minutes)`` when the space has its own quota (None = unlimited), else
    ``(False, None)``."""
    stmt = select(SpaceQuota.monthly_minutes).where(SpaceQuota.space_id == space_id)
    async with _read(sessionmaker) as db:
        row = (await db.execute(stmt)).first()
    return (False, None) if row is None else (True, row.monthly_minutes)


_SESSION_FIELDS = [f.name for f in dataclasses.fields(SessionRecord)]
_SEGMENT_COLUMNS: dict[str, Any] = {
    "id": Segment.id,
    "session_id": Segment.session_id,
    "utterance_id": Segment.utterance_id,
    "participant_id": Segment.participant_id,
    "participant_identity": Participant.identity,
    "participant_name": Participant.name,
    "track_sid": Segment.track_sid,
    "speaker_label": Segment.speaker_label,
    "text": Segment.text,
    "language": Segment.language,
    "start_ms": Segment.start_ms,
    "end_ms": Segment.end_ms,
    "started_at": Segment.started_at,
    "ended_at": Segment.ended_at,
    "confidence": Segment.confidence,
    "model": Segment.model,
}

_record_fields = [f.name for f in dataclasses.fields(SegmentRecord)]
if _record_fields[: len(_SEGMENT_COLUMNS)] != list(_SEGMENT_COLUMNS) or any(
    f.default is dataclasses.MISSING
    for f in dataclasses.fields(SegmentRecord)[len(_SEGMENT_COLUMNS) :]
):
    raise ImportError("api.queries: SegmentRecord changed; update _SEGMENT_COLUMNS")


def _page_statement(*, after: bool) -> Select[Any]:
    page = (
        select(*(column.label(name) for name, column in _SEGMENT_COLUMNS.items()))
        .select_from(Segment)
        .outerjoin(Participant, Participant.id == Segment.participant_id)
        .where(Segment.session_id == Session.id)
    )
    if after:
        page = page.where(
            tuple_(Segment.start_ms, Segment.id)
            > tuple_(bindparam("after_start_ms"), bindparam("after_id"))
        )
    lateral = page.order_by(Segment.start_ms, Segment.id).limit(bindparam("limit")).lateral("page")
    return (
        select(*(getattr(Session, name) for name in _SESSION_FIELDS), lateral)
        .select_from(Session)
        .outerjoin(lateral, true())
        .where(Session.slug == bindparam("slug"))
    )


class TranscriptReader:
    """One-statement transcript pages (see the module docstring); one per app."""

    def __init__(self, engine: AsyncEngine) -> None:
        # no BEGIN/COMMIT around a single read; the pool resets the option on check-in
        self._engine = engine.execution_options(isolation_level="AUTOCOMMIT")
        self._first = _page_statement(after=False)
        self._next = _page_statement(after=True)

    async def page(
        self, slug: str, *, after: SegmentCursor | None, limit: int
    ) -> tuple[SessionRecord, TranscriptPage] | None:
        """The session named ``slug`` and a page of its transcript in timeline order, or None
        when there is no such session. Same contract as ``Repository.transcript_page``."""
        params: dict[str, Any] = {"slug": slug, "limit": limit + 1}
        stmt = self._first
        if after is not None:
            stmt = self._next
            params |= {"after_start_ms": after.start_ms, "after_id": after.id}
        try:
            async with self._engine.connect() as conn:
                rows = (await conn.execute(stmt, params)).all()
        except _UNAVAILABLE as exc:
            raise StorageUnavailable("database unavailable") from exc
        if not rows:
            return None
        n = len(_SESSION_FIELDS)
        session = SessionRecord(*rows[0][:n])
        # positional (keywords cost ~4 us a row): the column order is checked at import
        items = [SegmentRecord(*row[n:]) for row in rows[:limit] if row[n] is not None]
        cursor = None
        if len(rows) > limit:
            cursor = SegmentCursor(items[-1].start_ms, items[-1].id)
        return session, TranscriptPage(items=items, next_cursor=cursor)


# group keys per grouping, named as UsageGroup's fields (SPACE: not offered by the API)
_DAY = func.date(func.timezone(literal_column("'UTC'"), TrackUsage.started_at)).label("day")
_USAGE_KEYS: dict[UsageGroupBy, dict[str, Any]] = {
    UsageGroupBy.DAY: {"day": _DAY},
    UsageGroupBy.USER: {"user_id": TrackUsage.user_id},
    UsageGroupBy.SESSION: {
        "session_id": TrackUsage.session_id,
        "session_slug": Session.slug,
        "session_title": Session.title,
    },
    UsageGroupBy.PARTICIPANT: {
        "participant_id": TrackUsage.participant_id,
        "participant_identity": Participant.identity,
        "participant_name": Participant.name,
        "session_id": TrackUsage.session_id,
        "session_slug": Session.slug,
        "session_title": Session.title,
    },
}
_TOTAL_FIELDS = [f.name for f in dataclasses.fields(UsageTotals)]  # currency first


def _usage_statement(group_by: UsageGroupBy, *, by_user: bool) -> Select[Any]:
    keys = list(_USAGE_KEYS[group_by].values())
    stmt = select(
        *keys,
        TrackUsage.currency,
        func.count().label("tracks"),
        func.sum(TrackUsage.audio_seconds),
        func.sum(TrackUsage.speech_seconds),
        func.sum(TrackUsage.partial_count),
        func.sum(TrackUsage.final_count),
        func.sum(TrackUsage.error_count),
        func.sum(TrackUsage.billed_minutes),
        func.sum(TrackUsage.total_cost),
    ).select_from(TrackUsage)
    if group_by in (UsageGroupBy.SESSION, UsageGroupBy.PARTICIPANT):
        stmt = stmt.outerjoin(Session, Session.id == TrackUsage.session_id)
    if group_by is UsageGroupBy.PARTICIPANT:
        stmt = stmt.outerjoin(Participant, Participant.id == TrackUsage.participant_id)
    stmt = stmt.where(
        TrackUsage.started_at >= bindparam("start"),
        TrackUsage.started_at < bindparam("end"),
        TrackUsage.space_id == bindparam("space_id"),
    )
    if by_user:
        stmt = stmt.where(TrackUsage.user_id == bindparam("user_id"))
    return stmt.group_by(*keys, TrackUsage.currency).order_by(
        *(k.asc().nulls_last() for k in keys), TrackUsage.currency
    )


def _sum(totals: Iterable[UsageTotals]) -> list[UsageTotals]:
    acc: dict[str, list[Any]] = defaultdict(
        lambda: [0, Decimal(0), Decimal(0), 0, 0, 0, 0, Decimal(0)]
    )
    for t in totals:
        sums = acc[t.currency]
        for i, name in enumerate(_TOTAL_FIELDS[1:]):
            sums[i] += getattr(t, name)
    return [UsageTotals(currency, *acc[currency]) for currency in sorted(acc)]


class UsageReader:
    """Space usage reports from prepared statements (see the module docstring); one per app."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine.execution_options(isolation_level="AUTOCOMMIT")
        self._statements = {
            (group_by, by_user): _usage_statement(group_by, by_user=by_user)
            for group_by in _USAGE_KEYS
            for by_user in (False, True)
        }

    async def report(
        self,
        *,
        space_id: str,
        start: datetime,
        end: datetime,
        group_by: UsageGroupBy,
        user_id: str | None = None,
    ) -> UsageReport:
        """``Repository.usage_report(space_id=..., user_id=..., tz="UTC", ...)``, same result."""
        if group_by not in _USAGE_KEYS:
            raise ValueError(f"grouping by {group_by.value} is not offered")
        if start.tzinfo is None or end.tzinfo is None or end <= start:
            raise ValueError("start and end must be timezone-aware, end after start")
        params: dict[str, Any] = {"start": start, "end": end, "space_id": space_id}
        if user_id is not None:
            params["user_id"] = user_id
        stmt = self._statements[(group_by, user_id is not None)]
        try:
            async with self._engine.connect() as conn:
                rows = (await conn.execute(stmt, params)).all()
        except _UNAVAILABLE as exc:
            raise StorageUnavailable("database unavailable") from exc
        names = list(_USAGE_KEYS[group_by])
        n = len(names)
        groups = []
        for row in rows:
            currency, tracks, audio, speech, partials, finals, errors, minutes, cost = row[n:]
            totals = UsageTotals(
                currency=currency,
                tracks=int(tracks),
                audio_seconds=audio,
                speech_seconds=speech,
                partial_count=int(partials),
                final_count=int(finals),
                error_count=int(errors),
                billed_minutes=int(minutes),
                total_cost=cost,
            )
            groups.append(UsageGroup(totals=totals, **dict(zip(names, row[:n], strict=True))))
        return UsageReport(
            group_by=group_by,
            start=start,
            end=end,
            groups=groups,
            totals=_sum(g.totals for g in groups),
        )
