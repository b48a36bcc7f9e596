"""One shared recognizer, many streams: a priority scheduler in front of a bounded executor.

* **Finals first.** A final decode is always taken before any partial.
* **Partials thin out under load.** Each stream has at most one pending partial; a newer one
  replaces it (the replaced request resolves to ``None``), and a final for a stream cancels its
  pending partial. So when the recognizer falls behind, streams get fewer partials, not later
  ones, and finals still arrive.
* **Bounded finals.** At most ``max_pending_finals`` finals wait; ``submit_final`` waits for room,
  pushing back on the producer instead of growing memory.
* **Batching.** Up to ``max_batch`` finals are decoded in one call (they all wait anyway).
  Partials go ``max_partial_batch`` at a time (1 by default): a final that arrives meanwhile
  waits for the decode in flight, so a long partial batch would delay it.

* **Workers.** ``workers`` decodes run at once, each on its own executor thread (the
  recognizer must allow it: ``WhisperRecognizer`` loads that many CTranslate2 replicas and
  splits ``cpu_threads`` between them). Each worker takes the next batch in the order above, so
  finals still go first; with one worker the order is exact. One worker with two intra-op
  threads kept only ~1.2 of 2 cores busy under load (the Python around each decode, feature
  extraction and word alignment run on one core). Whether two workers pay is not settled: on
  the shared 2-core machine at load 7-9 (the process got ~0.5 core) they did worse than one;
  re-measure on a quiet machine with ``python -m bench.engine --sections capacity --variant
  ASR_DECODE_WORKERS=2``. The default stays one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

from bot.pipeline.asr import DecodeRequest, Hypothesis
from core.errors import AsrError

logger = logging.getLogger("bot.pipeline")


class Recognizer(Protocol):
    """What the scheduler needs of a speech recognizer."""

    model_name: str
    multilingual: bool

    def decode_batch(self, requests: Sequence[DecodeRequest]) -> list[Hypothesis]: ...


@dataclass(slots=True, eq=False)  # jobs are found by identity (their audio is an array)
class _Job:
    stream_key: str
    request: DecodeRequest
    future: asyncio.Future[Hypothesis | None]
    submitted: float = field(default_factory=time.monotonic)


@dataclass(slots=True)
class SchedulerStats:
    finals_decoded: int = 0
    partials_decoded: int = 0
    partials_dropped: int = 0
    batches: int = 0
    errors: int = 0
    busy_s: float = 0.0


class DecodeScheduler:
    def __init__(
        self,
        recognizer: Recognizer,
        *,
        max_pending_finals: int = 32,
        max_batch: int = 4,
        max_partial_batch: int = 1,
        workers: int = 1,
    ) -> None:
        if min(max_pending_finals, max_batch, max_partial_batch, workers) < 1:
            raise ValueError("max_pending_finals, the batch sizes and workers must be positive")
        self.recognizer = recognizer
        self.max_batch = max_batch
        self.max_partial_batch = max_partial_batch
        self.stats = SchedulerStats()
        self._finals: deque[_Job] = deque()
        self._partials: OrderedDict[str, _Job] = OrderedDict()
        self._final_slots = asyncio.Semaphore(max_pending_finals)
        self._wake = asyncio.Event()
        self.workers = workers
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="asr")
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        if not self._tasks:
            loop = asyncio.get_running_loop()
            self._tasks = [
                loop.create_task(self._run(), name=f"asr-scheduler:{k}")
                for k in range(self.workers)
            ]

    async def aclose(self) -> None:
        self._closed = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        for job in [*self._finals, *self._partials.values()]:
            if not job.future.done():
                job.future.cancel()
        self._finals.clear()
        self._partials.clear()
        self._executor.shutdown(wait=True, cancel_futures=True)

    @property
    def pending_finals(self) -> int:
        return len(self._finals)

    @property
    def pending_partials(self) -> int:
        return len(self._partials)

    # -- submission -----------------------------------------------------------------------------
    async def submit_final(
        self, stream_key: str, request: DecodeRequest
    ) -> asyncio.Future[Hypothesis | None]:
        """Queue a final decode (waiting for room); returns the future of its hypothesis."""
        self._check_open()
        await self._final_slots.acquire()
        future: asyncio.Future[Hypothesis | None] = asyncio.get_running_loop().create_future()
        future.add_done_callback(lambda _: self._final_slots.release())
        self._drop_partial(stream_key)
        self._finals.append(_Job(stream_key, request, future))
        self._wake.set()
        return future

    def submit_partial(
        self, stream_key: str, request: DecodeRequest
    ) -> asyncio.Future[Hypothesis | None]:
        """Queue a partial decode, replacing this stream's pending one (which resolves None)."""
        self._check_open()
        self._drop_partial(stream_key)
        future: asyncio.Future[Hypothesis | None] = asyncio.get_running_loop().create_future()
        self._partials[stream_key] = _Job(stream_key, request, future)
        self._wake.set()
        return future

    def withdraw(self, future: asyncio.Future[Hypothesis | None]) -> bool:
        """Take back a queued decode before it starts (its future is cancelled).

        False when it is no longer queued: being decoded, or done. Used for speculative finals
        when speech goes on after a pause.
        """
        for job in self._finals:
            if job.future is future:
                self._finals.remove(job)
                future.cancel()  # releases its final slot
                return True
        for key, job in self._partials.items():
            if job.future is future:
                del self._partials[key]
                future.cancel()
                return True
        return False

    def _check_open(self) -> None:
        if self._closed:
            raise AsrError("the decode scheduler is closed")
        if not self._tasks:
            self.start()

    def _drop_partial(self, stream_key: str) -> None:
        old = self._partials.pop(stream_key, None)
        if old is not None and not old.future.done():
            old.future.set_result(None)
            self.stats.partials_dropped += 1

    # -- worker ---------------------------------------------------------------------------------
    def _next_batch(self) -> list[_Job]:
        batch: list[_Job] = []
        if self._finals:
            while self._finals and len(batch) < self.max_batch:
                batch.append(self._finals.popleft())
            return batch
        while self._partials and len(batch) < self.max_partial_batch:
            _, job = self._partials.popitem(last=False)
            batch.append(job)
        return batch

    async def _run(self) -> None:
        """One worker: decode batches until none is queued, then sleep until a submission."""
        loop = asyncio.get_running_loop()
        while True:
            batch = self._next_batch()
            if not batch:
                # no await between the empty check and the clear: no submission is missed
                self._wake.clear()
                await self._wake.wait()
                continue
            live = [j for j in batch if not j.future.done()]
            if not live:
                continue
            is_final = live[0].request.final
            started = time.perf_counter()
            try:
                results = await self._decode(loop, live)
            finally:
                self.stats.busy_s += time.perf_counter() - started
            self.stats.batches += 1
            if is_final:
                self.stats.finals_decoded += len(live)
            else:
                self.stats.partials_decoded += len(live)
            for j, result in zip(live, results, strict=True):
                if j.future.done():
                    continue
                if isinstance(result, AsrError):
                    j.future.set_exception(result)
                else:
                    j.future.set_result(result)

    async def _decode(
        self, loop: asyncio.AbstractEventLoop, jobs: list[_Job]
    ) -> list[Hypothesis | AsrError]:
        """Decode a batch; if it fails, decode its requests one by one to isolate the bad one."""
        try:
            hyps = await loop.run_in_executor(
                self._executor, self.recognizer.decode_batch, [j.request for j in jobs]
            )
            return list(hyps)
        except Exception as exc:  # one bad request must not stop the scheduler
            if len(jobs) > 1:
                out: list[Hypothesis | AsrError] = []
                for job in jobs:
                    out.extend(await self._decode(loop, [job]))
                return out
            self.stats.errors += 1
            logger.warning("decode failed", extra={"error": type(exc).__name__})
            return [exc if isinstance(exc, AsrError) else AsrError(type(exc).__name__)]
