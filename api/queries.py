"""Reads the API needs that ``api.db.repository`` does not offer, over the storage models.

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

Connection failures are translated to :class:`api.db.errors.StorageUnavailable` like the
repository does.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import Select, bindparam, select, true, tuple_
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from api.db.errors import StorageUnavailable
from api.db.models import Participant, Segment, Session, SpaceQuota
from api.db.records import SegmentCursor, SegmentRecord, SessionRecord, TranscriptPage

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
