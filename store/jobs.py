"""Transcription jobs: request and stop (the API), claim, heartbeat, release and finish (the
bot's workers), with ``NOTIFY`` on the jobs channel.

Claim takes the oldest REQUESTED job, else a RUNNING one with an expired lease, with ``FOR
UPDATE SKIP LOCKED``; ``attempts`` increments and fences the lease: heartbeat, release and finish
succeed only for the same worker and attempt while RUNNING. Requests, releases and stops notify
:data:`~store.notify.JOB_CHANNEL` on commit; notifications are hints, workers also poll.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import ColumnElement, func, null, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from store.base import (
    RowMapper,
    StoreBase,
    labelled,
    lock_active_session,
    sql_interval,
    sql_time,
)
from store.enums import JobStatus
from store.models import Session, TranscriptionJob
from store.notify import JOB_CHANNEL, job_payload
from store.records import JobLease, JobRecord
from store.webhooks import emit_transcripts_ready

__all__ = ["JOB_COLUMNS", "JobStore", "job_columns", "notify_jobs"]

_ACTIVE_JOBS: Final = (JobStatus.REQUESTED, JobStatus.RUNNING)
_JOB_FIELDS: Final[dict[str, Any]] = {
    "id": TranscriptionJob.id,
    "session_id": TranscriptionJob.session_id,
    "status": TranscriptionJob.status,
    "worker_id": TranscriptionJob.worker_id,
    "lease_expires_at": TranscriptionJob.lease_expires_at,
    "heartbeat_at": TranscriptionJob.heartbeat_at,
    "attempts": TranscriptionJob.attempts,
    "requested_at": TranscriptionJob.requested_at,
    "claimed_at": TranscriptionJob.claimed_at,
    "stopped_at": TranscriptionJob.stopped_at,
    "stop_reason": TranscriptionJob.stop_reason,
}
# a job's columns labelled as JobRecord's fields
JOB_COLUMNS: Final = labelled(_JOB_FIELDS)
_job = RowMapper(JobRecord)


def job_columns(prefix: str) -> list[Any]:
    """A job's columns labelled ``prefix`` + JobRecord's field names (beside other tables)."""
    return labelled(_JOB_FIELDS, prefix)


async def notify_jobs(
    s: AsyncSession,
    event: str,
    jobs: Sequence[tuple[int, int]],
    slug: str | None = None,
) -> None:
    """``pg_notify`` per ``(job_id, session_id)``; delivered when the surrounding transaction
    commits."""
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


class JobStore(StoreBase):
    """Transcription jobs, each method one transaction."""

    async def request_transcription(
        self, session_id: int, *, now: datetime | None = None
    ) -> JobRecord:
        """Ask for a bot in the session's room: creates the job or re-requests a stopped one,
        and ``NOTIFY``s workers on commit. A job already requested or running is returned as
        is (a requested one is re-announced). :class:`InvalidState` for an ended session."""
        ts = sql_time(now)
        async with self._tx() as s:
            session_row = await lock_active_session(s, session_id, Session.slug)
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
            ).returning(*JOB_COLUMNS)
            row = (await s.execute(upsert)).first()
            if row is None:
                row = (
                    await s.execute(
                        select(*JOB_COLUMNS).where(TranscriptionJob.session_id == session_id)
                    )
                ).one()
            job = _job(row)
            if job.status == JobStatus.REQUESTED:
                await notify_jobs(s, "requested", [(job.id, session_id)], session_row.slug)
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
                        stopped_at=sql_time(now),
                        stop_reason=reason,
                        worker_id=None,
                        lease_expires_at=None,
                    )
                    .returning(*JOB_COLUMNS)
                )
            ).first()
            if row is None:
                row = (
                    await s.execute(
                        select(*JOB_COLUMNS).where(TranscriptionJob.session_id == session_id)
                    )
                ).first()
                return _job(row) if row is not None else None
            job = _job(row)
            await notify_jobs(s, "stopped", [(job.id, session_id)])
        return job

    async def get_job(self, session_id: int) -> JobRecord | None:
        async with self._tx() as s:
            row = (
                await s.execute(
                    select(*JOB_COLUMNS).where(TranscriptionJob.session_id == session_id)
                )
            ).first()
        return _job(row) if row is not None else None

    async def count_active(self) -> dict[JobStatus, int]:
        """How many jobs are REQUESTED (waiting for a worker) and RUNNING (held by one), in one
        ``GROUP BY``; a status without jobs counts 0 (the API exports ``transcriber_jobs``)."""
        stmt = (
            select(TranscriptionJob.status, func.count())
            .where(TranscriptionJob.status.in_(_ACTIVE_JOBS))
            .group_by(TranscriptionJob.status)
        )
        async with self._read() as conn:
            rows = (await conn.execute(stmt)).all()
        counts = dict.fromkeys(_ACTIVE_JOBS, 0)
        counts.update({JobStatus(status): int(n) for status, n in rows})
        return counts

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
        ts = sql_time(now)
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
                            lease_expires_at=ts + sql_interval(lease_for),
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
        ts = sql_time(now)
        async with self._tx() as s:
            row = (
                await s.execute(
                    update(TranscriptionJob)
                    .where(*_owned(lease))
                    .values(lease_expires_at=ts + sql_interval(lease_for), heartbeat_at=ts)
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
                await notify_jobs(
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
                        stopped_at=sql_time(now),
                        stop_reason=reason,
                    )
                    .returning(TranscriptionJob.id)
                )
            ).first()
        return row is not None

    async def finals_stored(self, lease: JobLease, *, now: datetime | None = None) -> bool:
        """The worker of ``lease`` left the room and every final it heard is in the database
        (its spool drained). Recorded on the job if this claim is still the job's latest (even
        when the job was stopped meanwhile); if the session has ended, its ``transcript.ready``
        and ``usage.updated`` events are written now (see :mod:`store.webhooks`). False if the
        job was claimed again since."""
        async with self._tx() as s:
            # the session's row first, as ending a session locks it (then its job); NO KEY
            # UPDATE, like that UPDATE: finals written meanwhile (KEY SHARE) do not wait
            await s.execute(
                select(Session.id)
                .where(Session.id == lease.session_id)
                .with_for_update(key_share=True)
            )
            row = (
                await s.execute(
                    update(TranscriptionJob)
                    .where(
                        TranscriptionJob.id == lease.job_id,
                        TranscriptionJob.attempts == lease.attempt,
                    )
                    .values(finals_stored_at=sql_time(now), finals_attempt=lease.attempt)
                    .returning(TranscriptionJob.id)
                )
            ).first()
            if row is not None:
                await emit_transcripts_ready(s, [lease.session_id], now=now)
        return row is not None


def _owned(lease: JobLease) -> tuple[ColumnElement[bool], ...]:
    return (
        TranscriptionJob.id == lease.job_id,
        TranscriptionJob.worker_id == lease.worker_id,
        TranscriptionJob.attempts == lease.attempt,
        TranscriptionJob.status == JobStatus.RUNNING,
    )
