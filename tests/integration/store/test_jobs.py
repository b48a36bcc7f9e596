"""Transcription jobs: request + NOTIFY, concurrent claims, leases, reclaim, release, stop."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from core.errors import InvalidState, NotFound
from store.enums import JobStatus
from store.notify import JobListener
from store.records import JobLease
from store.stores import Store

T0 = datetime(2026, 11, 10, 12, 0, tzinfo=UTC)
LEASE = timedelta(seconds=30)


async def _requested(repo: Store, n: int) -> list[int]:
    ids = []
    for i in range(n):
        s = await repo.sessions.create_session(space_id="sp", created_by="u", now=T0)
        await repo.jobs.request_transcription(s.id, now=T0 + timedelta(milliseconds=i))
        ids.append(s.id)
    return ids


async def test_request_is_idempotent(repo: Store) -> None:
    (sid,) = await _requested(repo, 1)
    job = await repo.jobs.get_job(sid)
    assert job is not None and job.status is JobStatus.REQUESTED and job.attempts == 0
    assert await repo.jobs.request_transcription(sid) == job  # already requested: unchanged
    lease = await repo.jobs.claim_job("w1", now=T0)
    assert lease is not None
    running = await repo.jobs.request_transcription(sid)
    assert running.status is JobStatus.RUNNING and running.worker_id == "w1"
    stopped = await repo.jobs.stop_transcription(sid, now=T0)
    assert stopped is not None and stopped.status is JobStatus.STOPPED
    again = await repo.jobs.request_transcription(sid, now=T0 + timedelta(minutes=1))
    assert again.id == job.id and again.status is JobStatus.REQUESTED
    assert again.worker_id is None and again.stopped_at is None
    assert again.attempts == 1  # attempts never reset: they fence leases


async def test_request_refuses_ended_or_missing_session(repo: Store) -> None:
    s = await repo.sessions.create_session(space_id="sp", created_by="u")
    await repo.sessions.end_session(s.id)
    with pytest.raises(InvalidState):
        await repo.jobs.request_transcription(s.id)
    with pytest.raises(NotFound):
        await repo.jobs.request_transcription(10**9)
    assert await repo.jobs.stop_transcription(10**9) is None


async def test_notify_reaches_a_listener(repo: Store, database_url: str) -> None:
    async with JobListener(database_url) as listener:
        assert await listener.wait(timeout_s=0.05) is None
        s = await repo.sessions.create_session(space_id="sp", created_by="u")
        job = await repo.jobs.request_transcription(s.id)
        note = await listener.wait(timeout_s=10)
        assert note is not None
        assert (note.event, note.job_id, note.session_id, note.session_slug) == (
            "requested",
            job.id,
            s.id,
            s.slug,
        )
        lease = await repo.jobs.claim_job("w1")
        assert lease is not None
        await repo.jobs.stop_transcription(s.id)
        note = await listener.wait(timeout_s=10)
        assert note is not None and note.event == "stopped" and note.job_id == job.id
        assert await repo.jobs.release_job(lease) is False  # stopped: the lease is gone


async def test_concurrent_claims_never_share_a_job(repo: Store) -> None:
    jobs = set(await _requested(repo, 40))
    claimed: list[JobLease] = []

    async def worker(name: str) -> None:
        while (lease := await repo.jobs.claim_job(name, lease_for=LEASE)) is not None:
            claimed.append(lease)
            await asyncio.sleep(0)

    await asyncio.gather(*(worker(f"w{i}") for i in range(8)))
    assert sorted(lease.session_id for lease in claimed) == sorted(jobs)
    assert len({lease.job_id for lease in claimed}) == len(jobs)
    assert {lease.attempt for lease in claimed} == {1}
    assert len({lease.worker_id for lease in claimed}) > 1  # really concurrent
    assert await repo.jobs.claim_job("late") is None


async def test_oldest_request_first(repo: Store) -> None:
    ids = await _requested(repo, 3)
    order = []
    while (lease := await repo.jobs.claim_job("w", now=T0 + timedelta(seconds=1))) is not None:
        order.append(lease.session_id)
    assert order == ids


async def test_expired_lease_is_reclaimed_and_old_owner_fenced(repo: Store) -> None:
    (sid,) = await _requested(repo, 1)
    old = await repo.jobs.claim_job("w-old", lease_for=LEASE, now=T0)
    assert old is not None and old.attempt == 1
    assert old.lease_expires_at == T0 + LEASE

    # within the lease nobody else gets it; heartbeats extend it
    assert await repo.jobs.claim_job("w-new", now=T0 + timedelta(seconds=10)) is None
    assert await repo.jobs.heartbeat(old, lease_for=LEASE, now=T0 + timedelta(seconds=20))
    assert await repo.jobs.claim_job("w-new", now=T0 + timedelta(seconds=40)) is None

    # the old worker goes silent; after expiry another worker reclaims the job
    new = await repo.jobs.claim_job("w-new", lease_for=LEASE, now=T0 + timedelta(seconds=51))
    assert new is not None and new.session_id == sid and new.attempt == 2
    assert await repo.jobs.heartbeat(old, now=T0 + timedelta(seconds=52)) is False
    assert await repo.jobs.release_job(old) is False
    assert await repo.jobs.finish_job(old) is False
    # the same worker id with the old attempt is fenced too
    assert await repo.jobs.heartbeat(replace(new, attempt=1)) is False
    assert await repo.jobs.heartbeat(new, now=T0 + timedelta(seconds=53))

    job = await repo.jobs.get_job(sid)
    assert job is not None and job.worker_id == "w-new" and job.attempts == 2


async def test_expired_but_unclaimed_lease_can_still_be_renewed(repo: Store) -> None:
    await _requested(repo, 1)
    lease = await repo.jobs.claim_job("w", lease_for=LEASE, now=T0)
    assert lease is not None
    assert await repo.jobs.heartbeat(lease, now=T0 + timedelta(minutes=5))


async def test_release_requeues_and_finish_stops(repo: Store, database_url: str) -> None:
    (sid,) = await _requested(repo, 1)
    lease = await repo.jobs.claim_job("w1")
    assert lease is not None
    async with JobListener(database_url) as listener:
        assert await repo.jobs.release_job(lease)  # graceful drain
        note = await listener.wait(timeout_s=10)
        assert note is not None and note.event == "requested" and note.session_id == sid
    job = await repo.jobs.get_job(sid)
    assert job is not None and job.status is JobStatus.REQUESTED and job.worker_id is None
    taken = await repo.jobs.claim_job("w2")
    assert taken is not None and taken.attempt == 2
    assert await repo.jobs.finish_job(taken, reason="room_finished")
    job = await repo.jobs.get_job(sid)
    assert job is not None and job.status is JobStatus.STOPPED
    assert job.stop_reason == "room_finished" and job.worker_id is None
    assert await repo.jobs.heartbeat(taken) is False
    assert await repo.jobs.claim_job("w3") is None


async def test_count_active_counts_requested_and_running_jobs(repo: Store) -> None:
    assert await repo.jobs.count_active() == {JobStatus.REQUESTED: 0, JobStatus.RUNNING: 0}
    sids = await _requested(repo, 4)
    assert await repo.jobs.count_active() == {JobStatus.REQUESTED: 4, JobStatus.RUNNING: 0}
    assert await repo.jobs.claim_job("w1", lease_for=LEASE, now=T0) is not None
    assert await repo.jobs.claim_job("w2", lease_for=LEASE, now=T0) is not None
    await repo.jobs.stop_transcription(sids[3], now=T0)  # STOPPED jobs are not counted
    assert await repo.jobs.count_active() == {JobStatus.REQUESTED: 1, JobStatus.RUNNING: 2}
