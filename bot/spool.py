"""Final segments on their way to Postgres, with nothing lost when the database or the process dies.

Every final is first appended to a write-ahead file (one JSON line, flushed to the OS, so a
``kill -9`` of the worker loses nothing already written) and only then queued for the database.
A writer task upserts batches; while Postgres is unreachable it retries with backoff and the
captions keep flowing to the room. Memory holds at most one batch plus ``max_memory`` pending
finals: past that, finals stay on disk only and are read back from the file.

The write-ahead file is exclusively locked (``flock``) by its worker. When a worker starts it
replays every unlocked file in the spool folder (its own from a previous run, or one of a
worker that died on this machine) and deletes it once written. Upserts are idempotent on
``(session, utterance_id)``, so a replay never duplicates a segment.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import itertools
import json
import logging
import os
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Protocol

from bot import metrics
from core.errors import StorageError
from store.records import FinalSegment, UpsertOutcome, WordTiming

logger = logging.getLogger("bot.spool")


class SegmentStore(Protocol):
    async def upsert_final_segments(
        self, segments: Sequence[FinalSegment]
    ) -> list[UpsertOutcome]: ...


def encode(segment: FinalSegment) -> str:
    data = asdict(segment)
    for key in ("started_at", "ended_at"):
        if data[key] is not None:
            data[key] = data[key].isoformat()
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def decode(line: str) -> FinalSegment:
    data: dict[str, Any] = json.loads(line)
    for key in ("started_at", "ended_at"):
        if data.get(key):
            data[key] = datetime.fromisoformat(data[key])
    data["words"] = tuple(WordTiming(**w) for w in data.get("words") or ())
    return FinalSegment(**data)


class FinalSpool:
    def __init__(
        self,
        store: SegmentStore,
        directory: Path,
        worker_id: str,
        *,
        batch_size: int = 50,
        max_memory: int = 1000,
        retry_initial_s: float = 0.5,
        retry_max_s: float = 10.0,
        fsync: bool = False,
    ) -> None:
        self._store = store
        self._dir = directory
        self._path = directory / f"{_safe(worker_id)}.wal"
        self._batch_size = batch_size
        self._max_memory = max_memory
        self._retry_initial_s = retry_initial_s
        self._retry_max_s = retry_max_s
        self._fsync = fsync
        self._memory: deque[FinalSegment] = deque()
        self._on_disk_only = 0  # finals in the file but not in memory (spilled)
        self._read_offset = 0  # where spilled finals are read back from
        self._file: IO[str] | None = None
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self.written = 0
        self.write_failures = 0
        self.replayed = 0

    @property
    def pending(self) -> int:
        return len(self._memory) + self._on_disk_only

    # -- lifecycle ------------------------------------------------------------------------------
    def open(self) -> None:
        self._dir.mkdir(parents=True, exist_ok=True)
        self._file = open(self._path, "a+", encoding="utf-8")  # noqa: SIM115 - held for life
        fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._file.seek(0)
        leftovers = [line for line in self._file if line.strip()]
        self._file.seek(0, os.SEEK_END)
        self._read_offset = self._file.tell()
        for line in leftovers:  # our own file from a previous run: write it again
            self._memory.append(decode(line))
        if leftovers:
            self._idle.clear()
            self._wake.set()

    async def recover_orphans(self) -> int:
        """Write every other unlocked spool file of this folder; return the finals replayed."""
        total = 0
        for path in sorted(self._dir.glob("*.wal")):
            if path == self._path:
                continue
            claimed = _lock_and_read(path)
            if claimed is None:
                continue  # its worker is alive (or it is gone already)
            handle, segments = claimed
            with handle:
                for i in range(0, len(segments), self._batch_size):
                    await self._write_with_retry(segments[i : i + self._batch_size])
                path.unlink(missing_ok=True)
            total += len(segments)
        self.replayed += total
        if total:
            logger.info("replayed orphaned finals", extra={"count": total})
        return total

    async def close(self) -> None:
        if self._file is not None:
            if self.pending == 0:
                self._file.truncate(0)
            self._file.close()
            self._file = None

    # -- producer -------------------------------------------------------------------------------
    def put(self, segment: FinalSegment) -> None:
        """Record a final durably (write-ahead), then queue it for the database."""
        if self._file is None:
            raise RuntimeError("spool is not open")
        self._file.write(encode(segment) + "\n")
        self._file.flush()
        if self._fsync:
            os.fsync(self._file.fileno())
        if len(self._memory) < self._max_memory and self._on_disk_only == 0:
            self._memory.append(segment)
        else:
            self._on_disk_only += 1
        self._idle.clear()
        self._wake.set()

    async def flushed(self, timeout_s: float | None = None) -> bool:
        """Wait until everything put so far is in the database."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    # -- writer ---------------------------------------------------------------------------------
    async def run(self) -> None:
        """The writer task: runs until cancelled."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            while batch := self._next_batch():
                await self._write_with_retry(batch)
                self.written += len(batch)
                for _ in batch:
                    if self._memory:
                        self._memory.popleft()
                if not self._memory and self._on_disk_only == 0:
                    self._compact()
            if self.pending == 0:
                self._idle.set()

    def _next_batch(self) -> list[FinalSegment]:
        if not self._memory and self._on_disk_only:
            self._load_spilled()
        return list(itertools.islice(self._memory, self._batch_size))

    def _load_spilled(self) -> None:
        """Read spilled finals back from the file into memory (up to ``max_memory``)."""
        assert self._file is not None
        self._file.flush()
        with open(self._path, encoding="utf-8") as reader:
            lines = reader.readlines()
        # Lines already in the database come first; the spilled ones are the last ``n``.
        n = self._on_disk_only
        take = lines[len(lines) - n :][: self._max_memory]
        self._memory.extend(decode(line) for line in take)
        self._on_disk_only -= len(take)

    def _compact(self) -> None:
        """Everything written: empty the write-ahead file."""
        if self._file is not None:
            self._file.truncate(0)
            self._file.seek(0)

    async def _write_with_retry(self, batch: list[FinalSegment]) -> None:
        delay = self._retry_initial_s
        while True:
            try:
                await self._store.upsert_final_segments(batch)
                return
            except StorageError as exc:
                if not exc.retryable:
                    # A row the database refuses for good (session deleted...) is dropped,
                    # loudly, instead of blocking every final behind it.
                    logger.error("final segments refused", extra={"error": type(exc).__name__})
                    return
                self.write_failures += 1
                metrics.DB_WRITE_FAILURES.labels(kind="segments").inc()
                logger.warning(
                    "database unavailable; finals kept in the spool",
                    extra={"pending": self.pending, "retry_in_s": delay},
                )
            except OSError:
                self.write_failures += 1
                metrics.DB_WRITE_FAILURES.labels(kind="segments").inc()
                logger.warning("database connection failed; finals kept in the spool")
            await asyncio.sleep(delay)
            delay = min(self._retry_max_s, delay * 2)


def _lock_and_read(path: Path) -> tuple[IO[str], list[FinalSegment]] | None:
    """Lock a spool file of another worker and read it; None if that worker holds it."""
    try:
        handle = open(path, "r+", encoding="utf-8")  # noqa: SIM115 - closed by the caller
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle, [decode(line) for line in handle if line.strip()]


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)[:100] or "worker"


@contextlib.asynccontextmanager
async def running(spool: FinalSpool) -> Any:
    """Open the spool, run its writer, and on exit wait (bounded) for it to drain."""
    spool.open()
    task = asyncio.get_running_loop().create_task(spool.run(), name="final-spool")
    try:
        yield spool
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await spool.close()
