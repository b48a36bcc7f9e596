from __future__ import annotations

import asyncio
import fcntl
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from bot.spool import FinalSpool, decode, encode, running
from core.errors import NotFound, StorageUnavailable
from store.records import FinalSegment, UpsertOutcome, WordTiming


class FlakyStore:
    """An in-memory SegmentStore that can be switched 'down' like an unreachable Postgres."""

    def __init__(self) -> None:
        self.rows: dict[tuple[int, str], FinalSegment] = {}
        self.down = False
        self.calls = 0

    async def upsert_final_segments(self, segments: Sequence[FinalSegment]) -> list[UpsertOutcome]:
        self.calls += 1
        if self.down:
            raise StorageUnavailable("connection refused")
        for s in segments:
            self.rows[(s.session_id, s.utterance_id)] = s
        return [UpsertOutcome.INSERTED for _ in segments]


def seg(i: int, session: int = 1) -> FinalSegment:
    return FinalSegment(
        session_id=session,
        utterance_id=f"SG_x_{i}",
        track_sid="TR_1",
        text=f"Фраза номер {i}",
        start_ms=i * 1000,
        end_ms=i * 1000 + 900,
        participant_identity="alice",
        started_at=datetime(2026, 1, 1, tzinfo=UTC),
        words=(WordTiming("Фраза", i * 1000, i * 1000 + 300, 0.9),),
        confidence=0.8,
        model="base",
    )


def test_encode_decode_round_trip() -> None:
    assert decode(encode(seg(3))) == seg(3)


async def test_finals_reach_the_store(tmp_path: Path) -> None:
    store = FlakyStore()
    async with running(FinalSpool(store, tmp_path, "w1")) as spool:
        for i in range(120):
            spool.put(seg(i))
        assert await spool.flushed(5)
    assert len(store.rows) == 120
    assert (tmp_path / "w1.wal").read_text() == "", "a drained spool leaves an empty file"


async def test_outage_keeps_finals_and_writes_them_when_the_db_returns(tmp_path: Path) -> None:
    store = FlakyStore()
    store.down = True
    spool = FinalSpool(store, tmp_path, "w1", max_memory=10, retry_initial_s=0.01, retry_max_s=0.05)
    async with running(spool):
        for i in range(50):  # more than fit in memory: the rest is read back from disk
            spool.put(seg(i))
        await asyncio.sleep(0.2)
        assert store.rows == {} and spool.pending == 50 and spool.write_failures > 0
        store.down = False
        assert await spool.flushed(5)
    assert sorted(k[1] for k in store.rows) == sorted(f"SG_x_{i}" for i in range(50))


async def test_a_killed_worker_loses_nothing(tmp_path: Path) -> None:
    store = FlakyStore()
    store.down = True
    dead = FinalSpool(store, tmp_path, "w1")
    dead.open()
    for i in range(7):
        dead.put(seg(i))
    # "kill -9": no close, no flush to the database; the OS releases the lock with the process
    assert dead._file is not None
    fcntl.flock(dead._file.fileno(), fcntl.LOCK_UN)
    store.down = False
    # the same worker restarting replays its own file...
    async with running(FinalSpool(store, tmp_path, "w1")) as again:
        assert await again.flushed(5)
    assert len(store.rows) == 7
    dead._file.close()


async def test_orphans_of_dead_workers_are_replayed_but_live_ones_are_not(tmp_path: Path) -> None:
    store = FlakyStore()
    (tmp_path / "dead.wal").write_text("".join(encode(seg(i)) + "\n" for i in range(3)))
    alive = open(tmp_path / "alive.wal", "a+")  # noqa: SIM115, ASYNC230 - a test fixture file
    alive.write(encode(seg(99)) + "\n")
    alive.flush()
    fcntl.flock(alive.fileno(), fcntl.LOCK_EX)
    spool = FinalSpool(store, tmp_path, "new")
    spool.open()
    assert await spool.recover_orphans() == 3
    assert not (tmp_path / "dead.wal").exists()
    assert (tmp_path / "alive.wal").exists()
    assert {k[1] for k in store.rows} == {"SG_x_0", "SG_x_1", "SG_x_2"}
    await spool.close()
    alive.close()


async def test_replay_is_idempotent(tmp_path: Path) -> None:
    store = FlakyStore()
    async with running(FinalSpool(store, tmp_path, "w1")) as spool:
        spool.put(seg(1))
        spool.put(seg(1))
        assert await spool.flushed(5)
    assert list(store.rows) == [(1, "SG_x_1")]


async def test_a_permanently_refused_final_does_not_block_the_rest(tmp_path: Path) -> None:
    class Refusing(FlakyStore):
        async def upsert_final_segments(
            self, segments: Sequence[FinalSegment]
        ) -> list[UpsertOutcome]:
            if any(s.session_id == 404 for s in segments):
                raise NotFound("session deleted")
            return await super().upsert_final_segments(segments)

    store = Refusing()
    async with running(FinalSpool(store, tmp_path, "w1", batch_size=1)) as spool:
        spool.put(seg(1, session=404))
        spool.put(seg(2))
        assert await spool.flushed(5)
    assert list(store.rows) == [(1, "SG_x_2")]
