"""When to ask for a bot: the one rule shared by participant registration, webhooks and the API.

Transcription is requested when a person joins (registration or LiveKit's ``participant_joined``)
and on ``POST .../transcription/start``. Limits (concurrent tracks per session and per user, the
space's monthly quota) are checked first; a job a user stopped on purpose is not restarted by a
later join (only ``.../transcription/start`` restarts it).
"""

from __future__ import annotations

from api.errors import limit_code
from core.errors import LimitExceeded
from store.enums import JobStatus
from store.records import JobRecord, SessionRecord, TranscriptionLimits
from store.stores import Store

# stop_reason of a job stopped through POST .../transcription/stop
STOPPED_BY_USER = "stopped_by_user"


async def start(
    repo: Store,
    session: SessionRecord,
    *,
    limits: TranscriptionLimits,
    user_id: str | None,
) -> JobRecord:
    """Check limits, then create or re-request the session's job.

    Raises :class:`LimitExceeded` (-> 429) and ``InvalidState`` for an ended session (-> 409).
    """
    check = await repo.usage.check_transcription_allowed(
        session_id=session.id, limits=limits, user_id=user_id
    )
    if not check.allowed:
        raise LimitExceeded(check)
    return await repo.jobs.request_transcription(session.id)


async def on_join(
    repo: Store,
    session: SessionRecord,
    job: JobRecord | None,
    *,
    limits: TranscriptionLimits,
    user_id: str | None,
) -> tuple[JobRecord | None, str | None]:
    """Request transcription because someone joined; returns the job and, when it was not
    requested, why (``stopped_by_user`` or the limit's error code, e.g. ``quota_exceeded``)."""
    if job is not None and job.status is not JobStatus.STOPPED:
        return job, None
    if job is not None and job.stop_reason == STOPPED_BY_USER:
        return job, STOPPED_BY_USER
    try:
        return await start(repo, session, limits=limits, user_id=user_id), None
    except LimitExceeded as exc:
        return job, limit_code(exc.check.reason.value if exc.check.reason else "limit")
