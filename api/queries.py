"""Reads the API needs that ``api.db.repository`` does not offer, over the storage models.

Kept here (not in ``api/db``, which the storage side owns) and limited to reads shaped for HTTP
responses; the storage side may fold them into the repository:

* :func:`list_sessions_with_jobs`: a newest-first page of a space's sessions that can hide
  EXPIRED ones, each with its transcription job, in one round trip (the repository's
  ``list_sessions`` filters by one status only and would cost a ``get_job`` per row).
* :func:`get_session_with_job`: one session and its job in one round trip.
* :func:`space_quota_override`: whether a space has its own quota row, and its value
  (``Repository.effective_quota`` folds "no row" and the default together).

Connection failures are translated to :class:`api.db.errors.StorageUnavailable` like the
repository does.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import Select, select, tuple_
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.db.enums import SessionStatus
from api.db.errors import StorageUnavailable
from api.db.models import Session, SpaceQuota, TranscriptionJob
from api.db.records import JobRecord, SessionCursor, SessionRecord

SessionWithJob = tuple[SessionRecord, JobRecord | None]

_SESSION_FIELDS = [f.name for f in dataclasses.fields(SessionRecord)]
_JOB_FIELDS = [f.name for f in dataclasses.fields(JobRecord)]


def _select() -> Select[Any]:
    columns = [getattr(Session, name).label(f"s_{name}") for name in _SESSION_FIELDS]
    columns += [getattr(TranscriptionJob, name).label(f"j_{name}") for name in _JOB_FIELDS]
    return select(*columns).outerjoin(TranscriptionJob, TranscriptionJob.session_id == Session.id)


def _records(row: Any) -> SessionWithJob:
    session = SessionRecord(**{name: getattr(row, f"s_{name}") for name in _SESSION_FIELDS})
    job = None
    if row.j_id is not None:
        job = JobRecord(**{name: getattr(row, f"j_{name}") for name in _JOB_FIELDS})
    return session, job


@asynccontextmanager
async def _read(sessionmaker: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    try:
        async with sessionmaker() as db:
            yield db
    except (OSError, TimeoutError, sa_exc.OperationalError, sa_exc.InterfaceError) as exc:
        raise StorageUnavailable("database unavailable") from exc


async def list_sessions_with_jobs(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    space_id: str,
    status: SessionStatus | None,
    include_expired: bool,
    before: SessionCursor | None,
    limit: int,
) -> list[SessionWithJob]:
    """Sessions of ``space_id``, newest first (keyset on ``created_at, id``)."""
    stmt = _select().where(Session.space_id == space_id)
    if status is not None:
        stmt = stmt.where(Session.status == status)
    elif not include_expired:
        stmt = stmt.where(Session.status != SessionStatus.EXPIRED)
    if before is not None:
        stmt = stmt.where(
            tuple_(Session.created_at, Session.id) < tuple_(before.created_at, before.id)
        )
    stmt = stmt.order_by(Session.created_at.desc(), Session.id.desc()).limit(limit)
    async with _read(sessionmaker) as db:
        rows = (await db.execute(stmt)).all()
    return [_records(row) for row in rows]


async def get_session_with_job(
    sessionmaker: async_sessionmaker[AsyncSession], slug: str
) -> SessionWithJob | None:
    async with _read(sessionmaker) as db:
        row = (await db.execute(_select().where(Session.slug == slug))).first()
    return _records(row) if row is not None else None


async def space_quota_override(
    sessionmaker: async_sessionmaker[AsyncSession], space_id: str
) -> tuple[bool, int | None]:
    """``(True, minutes)`` when the space has its own quota (None = unlimited), else
    ``(False, None)``."""
    stmt = select(SpaceQuota.monthly_minutes).where(SpaceQuota.space_id == space_id)
    async with _read(sessionmaker) as db:
        row = (await db.execute(stmt)).first()
    return (False, None) if row is None else (True, row.monthly_minutes)
