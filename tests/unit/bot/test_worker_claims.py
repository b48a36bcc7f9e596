from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from bot.config import BotSettings
from bot.worker import Worker, _RoomHandle
from store.records import JobLease


def lease(job_id: int, attempt: int) -> JobLease:
    return JobLease(job_id, 10 + job_id, f"room-{job_id}", "w1", attempt, datetime.now(UTC))


class QueueRepo:
    """claim_job hands out the given leases in turn, then nothing."""

    def __init__(self, *leases: JobLease) -> None:
        self.leases = list(leases)
        self.jobs = self  # Store.jobs

    async def claim_job(self, worker_id: str, **_: Any) -> JobLease | None:
        return self.leases.pop(0) if self.leases else None


class NoSpool:
    async def recover_orphans(self) -> int:
        return 0


async def test_reclaiming_our_own_job_keeps_the_room_under_the_new_lease() -> None:
    worker = Worker(BotSettings(), QueueRepo(lease(1, 2)), None, NoSpool(), "")  # type: ignore[arg-type]
    handle = _RoomHandle(lease(1, 1))
    worker.rooms[1] = handle
    await worker._claim()
    assert worker.rooms == {1: handle}, "no second room for the same job"
    assert handle.lease.attempt == 2


async def test_claims_stop_at_max_rooms() -> None:
    repo = QueueRepo(lease(1, 1), lease(2, 1), lease(3, 1))
    worker = Worker(BotSettings(max_rooms=2), repo, None, NoSpool(), "")  # type: ignore[arg-type]

    async def no_room(handle: _RoomHandle) -> None:
        return None

    worker._room = no_room  # type: ignore[method-assign]
    await worker._claim()
    assert sorted(worker.rooms) == [1, 2]
    assert [lease.job_id for lease in repo.leases] == [3], "the third job is left for others"


class ReportRepo:
    """Store.jobs.finals_stored records the leases it is told about."""

    def __init__(self) -> None:
        self.jobs = self
        self.reported: list[JobLease] = []

    async def finals_stored(self, lease: JobLease) -> bool:
        self.reported.append(lease)
        return True


class Spool:
    """flushed() answers as told (a spool still holding finals answers False)."""

    def __init__(self, drained: bool) -> None:
        self.drained = drained
        self.waits: list[float | None] = []

    async def flushed(self, timeout_s: float | None = None) -> bool:
        self.waits.append(timeout_s)
        return self.drained


async def test_a_room_reports_its_finals_stored_once_the_spool_drained() -> None:
    repo, spool = ReportRepo(), Spool(drained=True)
    worker = Worker(BotSettings(), repo, None, spool, "")  # type: ignore[arg-type]
    handle = _RoomHandle(lease(1, 3))
    await worker._report_finals_stored(handle)
    assert repo.reported == [handle.lease]
    assert spool.waits == [BotSettings().drain_timeout_s]


async def test_a_spool_still_holding_finals_reports_nothing() -> None:
    repo = ReportRepo()
    worker = Worker(BotSettings(), repo, None, Spool(drained=False), "")  # type: ignore[arg-type]
    await worker._report_finals_stored(_RoomHandle(lease(1, 1)))
    assert repo.reported == []


class IdleEngine:
    speaking_streams = 0


async def test_a_room_that_ends_frees_its_slot_then_reports() -> None:
    repo, spool = ReportRepo(), Spool(drained=True)
    worker = Worker(BotSettings(), repo, IdleEngine(), spool, "")  # type: ignore[arg-type]
    handle = _RoomHandle(lease(1, 1))
    worker.rooms[1] = handle
    seen_rooms: list[dict[int, _RoomHandle]] = []

    async def room_ends(h: _RoomHandle) -> None:
        return None

    async def spool_flushed(timeout_s: float | None = None) -> bool:
        seen_rooms.append(dict(worker.rooms))
        return True

    worker._room_inner = room_ends  # type: ignore[method-assign]
    spool.flushed = spool_flushed  # type: ignore[method-assign]
    await worker._room(handle)
    assert seen_rooms == [{}], "the spool is awaited after the room's slot is free"
    assert repo.reported == [handle.lease]


async def test_a_failed_room_reports_nothing() -> None:
    repo = ReportRepo()
    worker = Worker(BotSettings(), repo, IdleEngine(), Spool(drained=True), "")  # type: ignore[arg-type]

    async def room_fails(h: _RoomHandle) -> None:
        raise RuntimeError("boom")

    async def release_job(lease: JobLease) -> bool:
        return True

    repo.release_job = release_job  # type: ignore[attr-defined]
    worker._room_inner = room_fails  # type: ignore[method-assign]
    await worker._room(_RoomHandle(lease(1, 1)))
    assert repo.reported == []
