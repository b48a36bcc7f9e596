from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import numpy as np
import pytest

from bot.pipeline.asr import DecodeRequest, Hypothesis
from bot.pipeline.scheduler import DecodeScheduler
from core.errors import AsrError
from tests.unit.engine.fakes import ScriptedRecognizer


def req(tag: float, *, final: bool) -> DecodeRequest:
    # the audio's first sample tags the request, so tests can see what ran in which order
    return DecodeRequest(audio=np.full(160, tag, dtype=np.float32), final=final)


def tags(batch: list[DecodeRequest]) -> list[float]:
    return [float(r.audio[0]) for r in batch]


async def test_finals_run_before_partials_queued_earlier() -> None:
    gate = threading.Event()
    rec = ScriptedRecognizer(gate=gate)
    sched = DecodeScheduler(rec, max_batch=1)
    blocker = sched.submit_partial("s0", req(0, final=False))  # occupies the worker
    await asyncio.sleep(0.05)
    partials = [sched.submit_partial(f"s{i}", req(i, final=False)) for i in (1, 2, 3)]
    finals = [await sched.submit_final(f"s{i}", req(10 + i, final=True)) for i in (4, 5)]
    gate.set()
    await asyncio.gather(blocker, *partials, *finals)
    order = [t for b in rec.batches for t in tags(b)]
    assert order[0] == 0
    assert order[1:3] == [14, 15], "finals must jump the queue"
    assert order[3:] == [1, 2, 3]
    await sched.aclose()


async def test_a_newer_partial_replaces_the_pending_one() -> None:
    gate = threading.Event()
    rec = ScriptedRecognizer(gate=gate)
    sched = DecodeScheduler(rec)
    busy = sched.submit_partial("other", req(0, final=False))
    await asyncio.sleep(0.05)
    old = sched.submit_partial("s", req(1, final=False))
    new = sched.submit_partial("s", req(2, final=False))
    gate.set()
    assert await old is None
    assert (await new) is not None
    await busy
    assert sched.stats.partials_dropped == 1
    assert 1 not in [t for b in rec.batches for t in tags(b)]
    await sched.aclose()


async def test_a_final_cancels_its_streams_pending_partial() -> None:
    gate = threading.Event()
    sched = DecodeScheduler(ScriptedRecognizer(gate=gate))
    busy = sched.submit_partial("other", req(0, final=False))
    await asyncio.sleep(0.05)
    partial = sched.submit_partial("s", req(1, final=False))
    final = await sched.submit_final("s", req(2, final=True))
    gate.set()
    assert await partial is None
    assert (await final) is not None
    await busy
    await sched.aclose()


async def test_under_overload_partials_thin_out_and_every_final_arrives() -> None:
    rec = ScriptedRecognizer(delay_s=0.02)
    sched = DecodeScheduler(rec, max_batch=2)
    finals = []
    partials = []
    for round_ in range(20):
        for s in range(6):  # six streams ask for a partial every "tick"
            partials.append(sched.submit_partial(f"s{s}", req(round_, final=False)))
        if round_ % 4 == 0:
            finals.append(await sched.submit_final(f"s{round_ % 6}", req(100 + round_, final=True)))
        await asyncio.sleep(0.005)
    results = await asyncio.gather(*finals)
    assert all(r is not None for r in results)
    done_partials = await asyncio.gather(*partials)
    assert sum(r is None for r in done_partials) > 0, "partials must be dropped under load"
    assert sched.stats.finals_decoded == len(finals)
    await sched.aclose()


async def test_finals_are_bounded_submitters_wait_for_room() -> None:
    gate = threading.Event()
    sched = DecodeScheduler(ScriptedRecognizer(gate=gate), max_pending_finals=2, max_batch=1)
    f1 = await sched.submit_final("a", req(1, final=True))
    f2 = await sched.submit_final("b", req(2, final=True))
    third = asyncio.create_task(sched.submit_final("c", req(3, final=True)))
    await asyncio.sleep(0.1)
    assert not third.done(), "a third final must wait while two are pending"
    gate.set()
    await asyncio.gather(f1, f2)
    f3 = await asyncio.wait_for(third, 5)
    assert (await f3) is not None
    await sched.aclose()


async def test_a_failed_batch_fails_its_futures_and_the_scheduler_goes_on() -> None:
    rec = ScriptedRecognizer()
    rec.fail_next = True
    sched = DecodeScheduler(rec, max_batch=1)
    bad = await sched.submit_final("a", req(1, final=True))
    with pytest.raises(AsrError):
        await bad
    good = await sched.submit_final("a", req(2, final=True))
    assert (await good) is not None
    assert sched.stats.errors == 1
    await sched.aclose()


async def test_finals_batch_together_partials_go_one_at_a_time() -> None:
    gate = threading.Event()
    rec = ScriptedRecognizer(gate=gate)
    sched = DecodeScheduler(rec, max_batch=4, max_partial_batch=1)
    busy = sched.submit_partial("x", req(0, final=False))
    await asyncio.sleep(0.05)
    partials = [sched.submit_partial(f"p{i}", req(i, final=False)) for i in (1, 2)]
    finals = [await sched.submit_final(f"f{i}", req(10 + i, final=True)) for i in (1, 2, 3)]
    gate.set()
    await asyncio.gather(busy, *partials, *finals)
    sizes = [len(b) for b in rec.batches]
    assert sizes == [1, 3, 1, 1]
    await sched.aclose()


async def test_a_queued_decode_can_be_withdrawn_a_running_one_cannot() -> None:
    gate = threading.Event()
    rec = ScriptedRecognizer(gate=gate)
    sched = DecodeScheduler(rec, max_pending_finals=3, max_batch=1)
    running = await sched.submit_final("a", req(1, final=True))
    await asyncio.sleep(0.05)  # the worker took it and waits at the gate
    # the same stream: the jobs differ only in their audio arrays
    ahead = await sched.submit_final("c", DecodeRequest(audio=np.full(320, 2, dtype=np.float32)))
    queued = await sched.submit_final("c", req(3, final=True))
    assert sched.withdraw(running) is False
    assert sched.withdraw(queued) is True  # found behind another job, by identity
    assert queued.cancelled() and not ahead.done()
    # its final slot is free again: another final fits without waiting
    more = await asyncio.wait_for(sched.submit_final("d", req(4, final=True)), 1)
    gate.set()
    await asyncio.gather(running, ahead, more)
    assert [t for b in rec.batches for t in tags(b)] == [1, 2, 4]
    assert sched.withdraw(running) is False  # done
    await sched.aclose()


class _Rendezvous(ScriptedRecognizer):
    """Each decode waits until ``parties`` decodes are running at once (a broken rendezvous,
    after 10 s alone, fails the decode)."""

    def __init__(self, parties: int) -> None:
        super().__init__()
        self.barrier = threading.Barrier(parties, timeout=10)

    def decode_batch(self, requests: Sequence[DecodeRequest]) -> list[Hypothesis]:
        try:
            self.barrier.wait()
        except threading.BrokenBarrierError as exc:
            raise AsrError("decoded alone") from exc
        return super().decode_batch(requests)


async def test_two_workers_decode_two_finals_at_once() -> None:
    rec = _Rendezvous(2)
    sched = DecodeScheduler(rec, max_batch=1, workers=2)
    finals = [await sched.submit_final(f"s{i}", req(i, final=True)) for i in (1, 2)]
    results = await asyncio.gather(*finals)
    assert all(r is not None and r.accepted for r in results)
    assert sorted(t for b in rec.batches for t in tags(b)) == [1, 2]
    await sched.aclose()


class _Permits(ScriptedRecognizer):
    """Records each decode as it starts, then waits for a permit to finish it."""

    def __init__(self) -> None:
        super().__init__()
        self.permits = threading.Semaphore(0)
        self.started: list[list[float]] = []

    def decode_batch(self, requests: Sequence[DecodeRequest]) -> list[Hypothesis]:
        self.started.append(tags(list(requests)))
        if not self.permits.acquire(timeout=10):
            raise AsrError("no permit")
        return super().decode_batch(requests)


async def _started(rec: _Permits, n: int) -> None:
    for _ in range(1000):
        if len(rec.started) >= n:
            return
        await asyncio.sleep(0.01)


async def test_with_two_workers_finals_still_go_before_queued_partials() -> None:
    rec = _Permits()
    sched = DecodeScheduler(rec, max_batch=1, workers=2)
    busy = [sched.submit_partial(f"b{i}", req(i, final=False)) for i in (0, 1)]
    await _started(rec, 2)  # both workers are decoding
    partials = [sched.submit_partial(f"p{i}", req(10 + i, final=False)) for i in (1, 2)]
    final = await sched.submit_final("f", req(20, final=True))
    rec.permits.release()  # one worker is free again: what does it take?
    await _started(rec, 3)
    assert rec.started[2] == [20], "the final must be the next decode started"
    rec.permits.release(4)  # the other busy decode, the final, the two partials
    await asyncio.gather(*busy, *partials, final)
    await sched.aclose()


async def test_partials_of_several_streams_batch_together_when_allowed() -> None:
    gate = threading.Event()
    rec = ScriptedRecognizer(gate=gate)
    sched = DecodeScheduler(rec, max_partial_batch=3)
    busy = sched.submit_partial("x", req(0, final=False))
    await asyncio.sleep(0.05)
    partials = [sched.submit_partial(f"p{i}", req(i, final=False)) for i in (1, 2, 3, 4)]
    gate.set()
    await asyncio.gather(busy, *partials)
    assert [tags(b) for b in rec.batches] == [[0], [1, 2, 3], [4]]
    await sched.aclose()
