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

Nothing in the folder can stop a worker from starting or block the finals behind it:

* a line that is not a final segment (cut short by a crash, garbage, an unknown key, a wrong
  type) is moved aside to ``<file>.bad-<utc time>``; the worker's own file is rewritten without it
  (a new final must not be appended to half a line);
* a final the database refuses for a reason nobody foresaw (anything but ``StorageError``) is
  written alone, and if it is refused again it is moved aside the same way;
* a leftover file whose replay fails is renamed ``<file>.bad-<utc time>`` as a whole, and the
  next leftover is replayed.

Each line or file moved aside counts in ``transcriber_spool_quarantined_total{reason}`` and is
logged with its file name and the error's type, never its content. To retry a quarantined file
after fixing the cause, rename it to ``<anything>.wal``: the next worker to start replays it.

Finals are transcript text: the folder is ``0700`` and every file in it ``0600``, made so when
created and corrected on start.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import itertools
import json
import logging
import os
import stat
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Final, Protocol, TypeGuard

from bot import metrics
from core.errors import ConfigError, StorageError
from core.logs import error_fields
from store.records import FinalSegment, UpsertOutcome, WordTiming

logger = logging.getLogger("bot.spool")

DIR_MODE: Final = 0o700
FILE_MODE: Final = 0o600
QUARANTINE_INFIX: Final = ".bad-"


class SegmentStore(Protocol):
    async def upsert_final_segments(
        self, segments: Sequence[FinalSegment]
    ) -> list[UpsertOutcome]: ...


class CorruptRecord(ValueError):
    """A spool line that is not a final segment. Its message never quotes the line."""


def encode(segment: FinalSegment) -> str:
    data = asdict(segment)
    for key in ("started_at", "ended_at"):
        if data[key] is not None:
            data[key] = data[key].isoformat()
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


_REQUIRED: Final = {"session_id", "utterance_id", "track_sid", "text", "start_ms", "end_ms"}
_STRINGS: Final = ("utterance_id", "track_sid", "text")
_OPTIONAL_STRINGS: Final = ("participant_identity", "language", "speaker")
_DEFAULT_STRINGS: Final = ("speaker_label", "model")
_TIMES: Final = ("started_at", "ended_at")
_FIELDS: Final = {*_REQUIRED, *_OPTIONAL_STRINGS, *_DEFAULT_STRINGS, *_TIMES, "words", "confidence"}
_WORD_FIELDS: Final = {"word", "start_ms", "end_ms", "probability"}


def decode(line: str | bytes) -> FinalSegment:
    """A final segment from one spool line, checked field by field (a leftover file may come
    from another version of the worker, or be damaged); :class:`CorruptRecord` otherwise."""
    try:
        data = json.loads(line)
    except (ValueError, RecursionError):  # JSONDecodeError, UnicodeDecodeError
        raise CorruptRecord("not a JSON line") from None
    if not isinstance(data, dict):
        raise CorruptRecord("not a JSON object")
    if not data.keys() <= _FIELDS:
        raise CorruptRecord("unknown keys")
    if not data.keys() >= _REQUIRED:
        raise CorruptRecord("missing keys")
    if not _is_int(data["session_id"]):
        raise CorruptRecord("session_id is not an integer")
    start_ms, end_ms = data["start_ms"], data["end_ms"]
    if not (_is_int(start_ms) and _is_int(end_ms) and 0 <= start_ms <= end_ms):
        raise CorruptRecord("timeline is not 0 <= start_ms <= end_ms")
    for key in _STRINGS:
        if not isinstance(data[key], str):
            raise CorruptRecord(f"{key} is not a string")
    for key in _OPTIONAL_STRINGS:
        if not isinstance(data.get(key), str | None):
            raise CorruptRecord(f"{key} is not a string")
    for key in _DEFAULT_STRINGS:
        if not isinstance(data.get(key, ""), str):
            raise CorruptRecord(f"{key} is not a string")
    times: dict[str, datetime | None] = {}
    for key in _TIMES:
        value = data.get(key)
        if value is not None and not isinstance(value, str):
            raise CorruptRecord(f"{key} is not a time")
        try:
            times[key] = datetime.fromisoformat(value) if value else None
        except ValueError:
            raise CorruptRecord(f"{key} is not a time") from None
    confidence = data.get("confidence")
    if confidence is not None and not _is_number(confidence):
        raise CorruptRecord("confidence is not a number")
    fields = {
        **data,
        **times,
        "words": _decode_words(data.get("words")),
        "confidence": None if confidence is None else float(confidence),
    }
    return FinalSegment(**fields)


def _decode_words(words: object) -> tuple[WordTiming, ...]:
    if words is None:
        return ()
    if not isinstance(words, list):
        raise CorruptRecord("words is not a list")
    out = []
    for w in words:
        if not isinstance(w, dict) or not w.keys() <= _WORD_FIELDS:
            raise CorruptRecord("a word is not a word timing")
        word, start_ms, end_ms = w.get("word"), w.get("start_ms"), w.get("end_ms")
        p = w.get("probability")
        if not (isinstance(word, str) and _is_int(start_ms) and _is_int(end_ms)):
            raise CorruptRecord("a word is not a word timing")
        if p is not None and not _is_number(p):
            raise CorruptRecord("a word's probability is not a number")
        out.append(WordTiming(word, start_ms, end_ms, None if p is None else float(p)))
    return tuple(out)


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


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
        self._file: IO[str] | None = None
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self.written = 0
        self.write_failures = 0
        self.replayed = 0
        self.quarantined = 0  # lines, finals and files moved aside

    @property
    def pending(self) -> int:
        return len(self._memory) + self._on_disk_only

    # -- lifecycle ------------------------------------------------------------------------------
    def open(self) -> None:
        """Prepare the folder, lock this worker's file and queue what a previous run left in it.

        Raises :class:`ConfigError` only when another live process holds this worker's file
        (two workers with one ``WORKER_ID`` on one ``SPOOL_DIR``); a damaged file never stops
        the start: its bad lines are moved aside and the file is rewritten without them."""
        _prepare_folder(self._dir)
        fd = _open_private(self._path, os.O_RDWR | os.O_CREAT | os.O_APPEND)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise ConfigError(
                    "another process holds this worker's spool file: "
                    "WORKER_ID must be unique per SPOOL_DIR"
                ) from None
            content = _read_all(fd)
            good, bad = _parse(content)
            if bad or (content.strip() and not content.endswith(b"\n")):
                try:
                    self._quarantine_lines(self._path.name, bad)
                except OSError as exc:  # a full disk, say: start anyway, without those lines
                    logger.error("unreadable spool lines dropped", extra=error_fields(exc))
                fd = _replace_locked(self._path, fd, (raw for raw, _ in good))
            self._file = os.fdopen(fd, "a+", encoding="utf-8")
        except BaseException:
            os.close(fd)  # closing releases the lock
            raise
        for _, segment in good:  # our own file from a previous run: write it again
            self._memory.append(segment)
        if good:
            self._idle.clear()
            self._wake.set()

    async def recover_orphans(self) -> int:
        """Write every other unlocked spool file of this folder; return the finals replayed.

        A file whose replay fails is moved aside and the next one is replayed."""
        total = 0
        for path in sorted(self._dir.glob("*.wal")):
            if path != self._path:
                total += await self._replay(path)
        self.replayed += total
        if total:
            logger.info("replayed orphaned finals", extra={"count": total})
        return total

    async def _replay(self, path: Path) -> int:
        fd = _claim(path)
        if fd is None:
            return 0  # its worker is alive (or it is gone already)
        try:
            try:
                good, bad = _parse(_read_all(fd))
                self._quarantine_lines(path.name, bad)
                segments = [segment for _, segment in good]
                written = 0
                for i in range(0, len(segments), self._batch_size):
                    written += await self._write(segments[i : i + self._batch_size], path.name)
            except Exception as exc:
                self._quarantine_file(path, exc)
                return 0
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            return written
        finally:
            os.close(fd)

    async def close(self) -> None:
        if self._file is not None:
            try:
                if self.pending == 0:
                    self._file.truncate(0)
            finally:
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
        """The writer task: runs until cancelled; a failure of one pass is logged and retried."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self._drain()
            except Exception as exc:  # a disk error reading spilled finals back, say
                logger.error("spool writer failed; retrying", extra=error_fields(exc))
                self._wake.set()
                await asyncio.sleep(self._retry_max_s)

    async def _drain(self) -> None:
        while batch := self._next_batch():
            self.written += await self._write(batch, self._path.name)
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
        with open(self._path, "rb") as reader:
            lines = [line for line in reader.read().split(b"\n") if line.strip()]
        # Lines already in the database come first; the spilled ones are the last ``n``.
        n = self._on_disk_only
        good, bad = _parse(b"\n".join(lines[len(lines) - n :][: self._max_memory]))
        self._quarantine_lines(self._path.name, bad)
        self._memory.extend(segment for _, segment in good)
        self._on_disk_only -= len(good) + len(bad)

    def _compact(self) -> None:
        """Everything written: empty the write-ahead file."""
        if self._file is not None:
            self._file.truncate(0)
            self._file.seek(0)

    async def _write(self, batch: list[FinalSegment], origin: str) -> int:
        """Upsert ``batch``; retry while the database is unreachable. A refused batch is tried
        final by final: a final refused for good (a ``StorageError``: its session deleted...)
        is dropped; one refused in a way nobody foresaw (a foreign exception: a value Postgres
        rejects, a bug) is moved aside. Returns the finals written. Never logs the error's
        message: it may quote the rows."""
        delay = self._retry_initial_s
        while True:
            try:
                await self._store.upsert_final_segments(batch)
                return len(batch)
            except StorageError as exc:
                if not exc.retryable:
                    if len(batch) > 1:  # find the final it refuses; write the others
                        return sum([await self._write([segment], origin) for segment in batch])
                    # A row the database refuses for good (session deleted...) is dropped,
                    # loudly, instead of blocking every final behind it.
                    logger.error("final segment refused", extra={"error": type(exc).__name__})
                    return 0
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
            except Exception as exc:
                if len(batch) > 1:  # find the final it refuses; write the others
                    return sum([await self._write([segment], origin) for segment in batch])
                logger.error("final segment refused; moved aside", extra=error_fields(exc))
                self._quarantine(origin, [encode(batch[0]).encode()], "refused")
                return 0
            await asyncio.sleep(delay)
            delay = min(self._retry_max_s, delay * 2)

    # -- quarantine -----------------------------------------------------------------------------
    def _quarantine_lines(self, origin: str, lines: Sequence[bytes]) -> None:
        if lines:
            logger.error(
                "unreadable spool lines moved aside", extra={"file": origin, "count": len(lines)}
            )
            self._quarantine(origin, lines, "corrupt")

    def _quarantine(self, origin: str, lines: Sequence[bytes], reason: str) -> None:
        """Append ``lines`` to a new ``<origin>.bad-<time>`` file (0600, synced)."""
        fd, _ = _create_aside(self._dir, origin)
        try:
            for line in lines:
                os.write(fd, line + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        self.quarantined += len(lines)
        metrics.SPOOL_QUARANTINED.labels(reason=reason).inc(len(lines))

    def _quarantine_file(self, path: Path, exc: Exception) -> None:
        """Rename a leftover file whose replay failed (its lock is still held by the caller)."""
        logger.error(
            "spool file not replayed; moved aside", extra={"file": path.name, **error_fields(exc)}
        )
        with contextlib.suppress(FileNotFoundError):
            os.rename(path, _aside_name(self._dir, path.name))
            self.quarantined += 1
            metrics.SPOOL_QUARANTINED.labels(reason="replay_failed").inc()


def _parse(content: bytes) -> tuple[list[tuple[bytes, FinalSegment]], list[bytes]]:
    """The lines of a spool file: (raw line, final) for the good ones, and the bad ones."""
    good: list[tuple[bytes, FinalSegment]] = []
    bad: list[bytes] = []
    for raw in content.split(b"\n"):
        if not raw.strip():
            continue
        try:
            good.append((raw, decode(raw)))
        except CorruptRecord:
            bad.append(raw)
    return good, bad


def _prepare_folder(directory: Path) -> None:
    """Create the folder 0700 (or make it so), and make every file in it 0600."""
    directory.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    mode = stat.S_IMODE(directory.stat().st_mode)
    if mode != DIR_MODE:
        try:
            os.chmod(directory, DIR_MODE)
        except PermissionError:
            # Not its owner: a Kubernetes emptyDir is root's (group fsGroup, mode 2777). The
            # files are 0600 all the same; others may list their names, not read them.
            logger.warning("spool folder mode not corrected", extra={"mode": oct(mode)})
    for entry in os.scandir(directory):
        try:
            mode = entry.stat(follow_symlinks=False).st_mode
            if stat.S_ISREG(mode) and stat.S_IMODE(mode) & ~FILE_MODE:
                os.chmod(entry.path, FILE_MODE)
        except OSError:  # gone meanwhile, or not ours: it is replayed (or skipped) later
            logger.warning("spool file mode not corrected", extra={"file": entry.name})


def _open_private(path: Path, flags: int) -> int:
    """``os.open`` a regular file (no symlink followed), created 0600 and made 0600."""
    fd = os.open(path, flags | os.O_CLOEXEC | os.O_NOFOLLOW, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _read_all(fd: int) -> bytes:
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


def _replace_locked(path: Path, fd: int, lines: Iterable[bytes]) -> int:
    """Replace the locked file ``path`` (open as ``fd``) by one holding ``lines``; return the
    new file's descriptor, locked. The old one is closed. A crash leaves the old file or the
    new one, never half of either."""
    tmp = path.with_name(path.name + ".tmp")
    new = _open_private(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND)
    try:
        fcntl.flock(new, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.write(new, b"".join(line + b"\n" for line in lines))
        os.fsync(new)
        os.rename(tmp, path)
    except BaseException:
        os.close(new)
        raise
    os.close(fd)
    return new


def _claim(path: Path) -> int | None:
    """Open and lock another worker's spool file; None if that worker holds it, or the file
    is gone or was replaced meanwhile."""
    try:
        fd = _open_private(path, os.O_RDWR)
    except FileNotFoundError:
        return None
    except OSError as exc:  # a symlink, a file of another user
        logger.warning("spool file skipped", extra={"file": path.name, **error_fields(exc)})
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if os.fstat(fd).st_ino != os.stat(path, follow_symlinks=False).st_ino:
            raise FileNotFoundError  # replayed and recreated by its worker meanwhile
    except (BlockingIOError, FileNotFoundError):
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd


def _aside_name(directory: Path, name: str) -> Path:
    return directory / f"{name}{QUARANTINE_INFIX}{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}"


def _create_aside(directory: Path, name: str) -> tuple[int, Path]:
    """A new quarantine file for lines of ``name``: 0600, never an existing one."""
    for attempt in itertools.count():
        path = _aside_name(directory, name + (f".{attempt}" if attempt else ""))
        try:
            return _open_private(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL), path
        except FileExistsError:
            continue
    raise AssertionError("unreachable")


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
