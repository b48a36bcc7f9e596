from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import os
import stat
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from bot.spool import FinalSpool, decode, encode, running
from core.errors import ConfigError, NotFound, StorageUnavailable
from core.logs import JsonFormatter
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

    # in one batch: only the refused final is dropped, not its neighbours
    store = Refusing()
    async with running(FinalSpool(store, tmp_path, "w1")) as spool:
        spool.put(seg(3))
        spool.put(seg(4, session=404))
        spool.put(seg(5))
        assert await spool.flushed(5)
    assert sorted(store.rows) == [(1, "SG_x_3"), (1, "SG_x_5")]


# --- damaged files, refused finals, leftovers that fail: nothing stops the worker ---------------
MARKER = "zq-private-7d1207"  # a "transcript" no log line may quote


def fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def quarantined(directory: Path) -> dict[str, list[str]]:
    """The files moved aside, name -> lines."""
    return {
        p.name: p.read_text(errors="replace").splitlines()
        for p in sorted(directory.glob("*.bad-*"))
    }


def log_text(caplog: pytest.LogCaptureFixture) -> str:
    """Every record as the JSON log line would print it: message, details, traceback."""
    formatter = JsonFormatter()
    return "\n".join(formatter.format(r) for r in caplog.records)


def lines(*segments: FinalSegment) -> str:
    return "".join(encode(s) + "\n" for s in segments)


async def test_a_truncated_last_line_of_its_own_file_is_moved_aside(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    own = tmp_path / "w1.wal"
    half = encode(seg(3)).replace("Фраза", MARKER)[:60]
    own.write_text(lines(seg(1), seg(2)) + half)  # the worker died in the middle of a write
    store = FlakyStore()
    async with running(FinalSpool(store, tmp_path, "w1")) as spool:
        assert await spool.flushed(5)
        spool.put(seg(4))  # appended after a whole line, not glued to the half one
        assert [decode(line) for line in own.read_text().splitlines()] == [seg(4)]
        assert await spool.flushed(5)
    assert sorted(k[1] for k in store.rows) == ["SG_x_1", "SG_x_2", "SG_x_4"]
    ((name, moved),) = quarantined(tmp_path).items()
    assert name.startswith("w1.wal.bad-") and moved == [half]
    assert spool.quarantined == 1 and MARKER not in log_text(caplog)


async def test_a_garbage_line_in_the_middle_is_moved_aside_and_the_rest_written(
    tmp_path: Path,
) -> None:
    garbage = "\x00\x01 not json {" + MARKER
    (tmp_path / "w1.wal").write_text(lines(seg(1)) + garbage + "\n" + lines(seg(2)))
    (tmp_path / "dead.wal").write_bytes(
        lines(seg(5)).encode() + b"\xff\xfe broken utf-8\n" + lines(seg(6)).encode()
    )
    store = FlakyStore()
    before = _quarantine_metric("corrupt")
    async with running(FinalSpool(store, tmp_path, "w1")) as spool:
        assert await spool.recover_orphans() == 2
        assert await spool.flushed(5)
    assert sorted(k[1] for k in store.rows) == ["SG_x_1", "SG_x_2", "SG_x_5", "SG_x_6"]
    moved = quarantined(tmp_path)
    assert sorted(line for ls in moved.values() for line in ls) == sorted(
        [garbage, "\ufffd\ufffd broken utf-8"]
    )
    assert not (tmp_path / "dead.wal").exists()
    assert _quarantine_metric("corrupt") == before + 2


@pytest.mark.parametrize(
    "change",
    [
        {"voice": "alice"},  # an unknown key (a newer worker's format)
        {"start_ms": "0"},
        {"end_ms": None},
        {"text": 5},
        {"session_id": True},
        {"confidence": MARKER},
        {"started_at": MARKER},  # today: ValueError quoting the value, logged with its traceback
        {"words": [{"word": MARKER, "start_ms": 0}]},
        {"words": [{"word": "x", "start_ms": 0, "end_ms": 1, "stress": 1}]},
        {"start_ms": 900, "end_ms": 100},
    ],
)
async def test_a_wrong_record_in_another_workers_file_is_moved_aside(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, change: dict[str, object]
) -> None:
    caplog.set_level(logging.DEBUG)
    bad = {**json.loads(encode(seg(2))), **change}
    bad["text"] = MARKER if bad["text"] != 5 else 5
    (tmp_path / "dead.wal").write_text(lines(seg(1)) + json.dumps(bad) + "\n" + lines(seg(3)))
    store = FlakyStore()
    spool = FinalSpool(store, tmp_path, "new")
    spool.open()
    try:
        assert await spool.recover_orphans() == 2
    finally:
        await spool.close()
    assert sorted(k[1] for k in store.rows) == ["SG_x_1", "SG_x_3"]
    ((name, moved),) = quarantined(tmp_path).items()
    assert name.startswith("dead.wal.bad-") and [json.loads(m) for m in moved] == [bad]
    assert not (tmp_path / "dead.wal").exists()
    assert MARKER not in log_text(caplog)


class Refusing(FlakyStore):
    """Refuses finals of session 13 with a foreign exception that quotes them, as asyncpg's
    ``DataError`` does ("invalid input for query argument $6: '...'")."""

    async def upsert_final_segments(self, segments: Sequence[FinalSegment]) -> list[UpsertOutcome]:
        for s in segments:
            if s.session_id == 13:
                raise RuntimeError(f"invalid input for query argument $6: {s.text!r}")
        return await super().upsert_final_segments(segments)


async def test_a_leftover_that_fails_is_moved_aside_and_the_next_one_replays(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    refused = FinalSegment(13, "SG_r", "TR_1", MARKER, 0, 10)
    (tmp_path / "a.wal").write_text(lines(seg(1), refused, seg(2)))
    (tmp_path / "b.wal").write_text(lines(seg(3)))
    store = Refusing()
    before = _quarantine_metric("refused")
    spool = FinalSpool(store, tmp_path, "new")
    spool.open()
    try:
        assert await spool.recover_orphans() == 3
    finally:
        await spool.close()
    assert sorted(k[1] for k in store.rows) == ["SG_x_1", "SG_x_2", "SG_x_3"]
    assert not (tmp_path / "a.wal").exists() and not (tmp_path / "b.wal").exists()
    ((name, moved),) = quarantined(tmp_path).items()
    assert name.startswith("a.wal.bad-") and [decode(m) for m in moved] == [refused]
    assert _quarantine_metric("refused") == before + 1
    assert MARKER not in log_text(caplog)


async def test_a_refused_live_final_does_not_stop_the_writer(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    store = Refusing()
    async with running(FinalSpool(store, tmp_path, "w1")) as spool:
        spool.put(seg(1))
        spool.put(FinalSegment(13, "SG_r", "TR_1", MARKER, 0, 10))
        spool.put(seg(2))
        assert await spool.flushed(5)
        spool.put(seg(3))  # the writer is still there
        assert await spool.flushed(5)
    assert sorted(k[1] for k in store.rows) == ["SG_x_1", "SG_x_2", "SG_x_3"]
    assert len(quarantined(tmp_path)) == 1
    assert MARKER not in log_text(caplog)


async def test_files_are_private_to_the_worker(tmp_path: Path) -> None:
    folder = tmp_path / "spool"
    async with running(FinalSpool(FlakyStore(), folder / "nested", "w1")) as spool:
        spool.put(seg(1))
        assert await spool.flushed(5)
    assert stat.S_IMODE((folder / "nested").stat().st_mode) == 0o700
    assert stat.S_IMODE((folder / "nested" / "w1.wal").stat().st_mode) == 0o600

    # a folder and files left by an older version: corrected on start
    folder.chmod(0o755)
    (folder / "w1.wal").write_text(lines(seg(1)) + "garbage\n")
    (folder / "w1.wal").chmod(0o644)
    (folder / "alive.wal").write_text(lines(seg(2)))
    (folder / "alive.wal").chmod(0o644)
    with open(folder / "alive.wal") as alive:  # noqa: ASYNC230 - a test fixture file
        fcntl.flock(alive.fileno(), fcntl.LOCK_EX)  # its worker runs: replayed later, not now
        async with running(FinalSpool(FlakyStore(), folder, "w1")) as spool:
            assert await spool.flushed(5)
            modes = {
                p.name: stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir() if p.is_file()
            }
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert len(modes) == 3 and set(modes.values()) == {0o600}, modes


async def test_every_descriptor_is_closed_and_every_lock_released(tmp_path: Path) -> None:
    (tmp_path / "w1.wal").write_text(lines(seg(1)) + "garbage\n" + '{"half": ')
    (tmp_path / "a.wal").write_text(lines(seg(2), FinalSegment(13, "r", "TR", "x", 0, 1)))
    (tmp_path / "b.wal").write_text('{"unknown": 1}\n' + lines(seg(3)))
    before = fds()
    for _ in range(2):
        async with running(FinalSpool(Refusing(), tmp_path, "w1")) as spool:
            await spool.recover_orphans()
            spool.put(seg(4))
            assert await spool.flushed(5)
    with pytest.raises(ConfigError):  # two workers with one WORKER_ID
        async with running(FinalSpool(Refusing(), tmp_path, "w1")):
            with pytest.raises(ConfigError):
                FinalSpool(Refusing(), tmp_path, "w1").open()
            raise ConfigError("the second one refused")
    assert fds() == before
    with open(tmp_path / "w1.wal") as own:  # noqa: ASYNC230 - a test fixture file
        fcntl.flock(own.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # nobody holds it any more


def _quarantine_metric(reason: str) -> float:
    value = REGISTRY.get_sample_value("transcriber_spool_quarantined_total", {"reason": reason})
    return value or 0.0
