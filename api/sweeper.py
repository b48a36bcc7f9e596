"""The lifecycle sweeper: LIVE sessions inactive for ``SESSION_INACTIVE_MINUTES`` end, CREATED
sessions older than ``SESSION_EXPIRE_HOURS`` expire (their jobs stop, open usage closes).

One task per API process, every ``SESSION_SWEEP_INTERVAL_SECONDS``; several replicas may sweep at
once (the session store skips rows another sweeper holds). A failing database only delays a sweep.
Each sweep also counts the active jobs for ``transcriber_jobs{status}`` (a failing database keeps
the previous figures), deletes the webhook event ids whose signatures expired, announces the
transcripts of sessions whose bot never reported its finals stored within
``WEBHOOK_TRANSCRIPT_READY_TIMEOUT_MINUTES`` (``transcript.ready`` with ``"complete": false``,
see :mod:`store.webhooks`), and purges transcripts past their space's retention
(:mod:`store.retention`): batches of ``PURGE_BATCH`` rows, one short transaction each, at most
``PURGE_MAX_BATCHES`` per sweep (the next sweep goes on), counted in
``transcriber_retention_deleted_total{kind}``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging

from api.metrics import ApiMetrics
from api.settings import ApiSettings
from core.errors import StorageError
from store.records import SweepResult
from store.retention import PURGE_BATCH, PurgeBatch
from store.stores import Store

logger = logging.getLogger("api.sweeper")

BATCH_SIZE = 500
# per sweep: up to 100 000 segments, so one sweep never runs for long
PURGE_MAX_BATCHES = 100


async def sweep_once(
    repo: Store,
    settings: ApiSettings,
    *,
    metrics: ApiMetrics | None = None,
    now: dt.datetime | None = None,
) -> SweepResult:
    """Sweep until nothing is left; returns every slug it ended or expired."""
    ended: list[str] = []
    expired: list[str] = []
    while True:
        result = await repo.sessions.sweep_sessions(
            inactive_after=dt.timedelta(minutes=settings.session_inactive_minutes),
            expire_after=dt.timedelta(hours=settings.session_expire_hours),
            now=now,
            batch_size=BATCH_SIZE,
        )
        ended += result.ended
        expired += result.expired
        if metrics is not None:
            metrics.sweeps.labels("ended").inc(len(result.ended))
            metrics.sweeps.labels("expired").inc(len(result.expired))
        if len(result.ended) < BATCH_SIZE and len(result.expired) < BATCH_SIZE:
            break
    overdue = dt.timedelta(minutes=settings.webhook_transcript_ready_timeout_minutes)
    while True:
        announced = await repo.webhooks.overdue_transcripts(
            after=overdue, now=now, batch_size=BATCH_SIZE
        )
        if len(announced) < BATCH_SIZE:
            return SweepResult(ended=ended, expired=expired)


async def purge_once(
    repo: Store,
    *,
    metrics: ApiMetrics | None = None,
    now: dt.datetime | None = None,
    batch_size: int = PURGE_BATCH,
    max_batches: int = PURGE_MAX_BATCHES,
) -> PurgeBatch:
    """Purge expired transcripts batch by batch until nothing is left (or ``max_batches``);
    returns the totals."""
    segments = sessions = 0
    for _ in range(max_batches):
        batch = await repo.retention.purge_batch(now=now, batch_size=batch_size)
        segments += batch.segments
        sessions += batch.sessions
        if metrics is not None:
            metrics.retention_deleted.labels("segments").inc(batch.segments)
            metrics.retention_deleted.labels("sessions").inc(batch.sessions)
        if batch.empty:
            break
    return PurgeBatch(segments=segments, sessions=sessions)


async def run_sweeper(repo: Store, settings: ApiSettings, metrics: ApiMetrics) -> None:
    """Sweep forever (until cancelled)."""
    while True:
        try:
            result = await sweep_once(repo, settings, metrics=metrics)
            if result.ended or result.expired:
                logger.info(
                    "sessions swept",
                    extra={"ended": len(result.ended), "expired": len(result.expired)},
                )
            metrics.export_jobs(await repo.jobs.count_active())
            await repo.livekit_events.sweep()
            purged = await purge_once(repo, metrics=metrics)
            if not purged.empty:
                logger.info(
                    "expired transcripts purged",
                    extra={"segments": purged.segments, "sessions": purged.sessions},
                )
        except StorageError as exc:
            logger.warning("session sweep failed", extra={"error": type(exc).__name__})
        await asyncio.sleep(settings.session_sweep_interval_seconds)
