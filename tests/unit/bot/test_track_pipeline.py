"""A track pipeline: audio in, captions to its sinks, usage to the meter; failures stay local."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import numpy as np
import pytest

from bot.pipeline.engine import SpeechEngine, StreamOptions
from bot.pipeline.track import TrackPipeline
from bot.pipeline.types import Speaker, SpokenCaption
from bot.pipeline.usage import UsageMeter
from bot.pipeline.vad import Float32Array, SegmenterOptions
from tests.unit.engine.fakes import AmplitudeVad, ScriptedRecognizer, silence, tone


class _Vad:
    def stream(self) -> AmplitudeVad:
        return AmplitudeVad()


def engine() -> SpeechEngine:
    options = StreamOptions(segmenter=SegmenterOptions(min_silence_ms=400), emit_partials=False)
    recognizer = ScriptedRecognizer(lambda request: "hello there")
    return SpeechEngine(recognizer, _Vad(), stream_options=options)  # type: ignore[arg-type]


class ArraySource:
    """An AudioSource over an array, in 100 ms frames; optionally failing after ``fail_after_s``."""

    def __init__(self, audio: Float32Array, *, fail_after_s: float | None = None) -> None:
        self.audio = audio
        self.fail_after = None if fail_after_s is None else int(fail_after_s * 16_000)
        self.closed = False

    async def frames(self) -> AsyncIterator[Float32Array]:
        for i in range(0, len(self.audio), 1600):
            if self.closed:
                return
            if self.fail_after is not None and i >= self.fail_after:
                raise ConnectionError("track went away badly")
            yield self.audio[i : i + 1600]
            await asyncio.sleep(0)

    async def aclose(self) -> None:
        self.closed = True


class ListSink:
    def __init__(self, *, fail: bool = False) -> None:
        self.items: list[SpokenCaption] = []
        self.fail = fail

    async def publish(self, item: SpokenCaption) -> None:
        if self.fail:
            raise ConnectionError("room gone")
        self.items.append(item)


def speaker(sid: str) -> Speaker:
    return Speaker(identity=f"p-{sid}", name="P", track_sid=sid, label="P")


def speech() -> Float32Array:
    return np.concatenate([silence(0.3), tone(1.5), silence(1.0)])


def pipeline(
    eng: SpeechEngine,
    sid: str,
    source: ArraySource,
    record: ListSink,
    room: ListSink,
    meter: UsageMeter,
) -> TrackPipeline:
    return TrackPipeline(
        speaker(sid),
        source,
        eng.open_stream(sid),
        record=record,
        publish=room,
        meter=meter,
        stream_id=1,
    )


async def test_finals_reach_both_sinks_and_the_meter() -> None:
    eng, meter = engine(), UsageMeter()
    record, room, source = ListSink(), ListSink(), ArraySource(speech())
    meter.start("TR_1")
    await asyncio.wait_for(pipeline(eng, "TR_1", source, record, room, meter).run(), 10)
    await eng.aclose()
    assert [i.caption.text for i in record.items if i.caption.is_final] == ["hello there"]
    assert [i.caption.text for i in room.items if i.caption.is_final] == ["hello there"]
    assert all(i.speaker.track_sid == "TR_1" for i in room.items)
    assert source.closed
    [usage] = meter.due()
    assert usage.audio_s == pytest.approx(len(speech()) / 16_000)
    assert (usage.finals, usage.errors) == (1, 0)


async def test_a_failing_track_ends_its_own_pipeline_only() -> None:
    eng, meter = engine(), UsageMeter()
    bad = pipeline(
        eng, "TR_bad", ArraySource(speech(), fail_after_s=0.5), ListSink(), ListSink(), meter
    )
    good_room = ListSink()
    good = pipeline(eng, "TR_good", ArraySource(speech()), ListSink(), good_room, meter)
    # Both return: the failure is contained in the bad track's pipeline.
    await asyncio.wait_for(asyncio.gather(bad.run(), good.run()), 10)
    await eng.aclose()
    assert [i.caption.text for i in good_room.items if i.caption.is_final] == ["hello there"]
    errors = {d.track_sid: d.errors for d in meter.due()}
    assert errors == {"TR_bad": 1, "TR_good": 0}


async def test_a_room_that_cannot_take_captions_does_not_stop_persistence() -> None:
    eng, meter = engine(), UsageMeter()
    record = ListSink()
    run = pipeline(eng, "TR_1", ArraySource(speech()), record, ListSink(fail=True), meter).run()
    await asyncio.wait_for(run, 10)
    await eng.aclose()
    assert [i.caption.text for i in record.items if i.caption.is_final] == ["hello there"]
    assert [d.errors for d in meter.due()] == [0]


async def test_a_failing_store_ends_the_track_and_counts_an_error() -> None:
    eng, meter = engine(), UsageMeter()
    room = ListSink()
    run = pipeline(eng, "TR_1", ArraySource(speech()), ListSink(fail=True), room, meter).run()
    await asyncio.wait_for(run, 10)
    await eng.aclose()
    assert room.items == [], "nothing is published that was not stored first"
    assert [d.errors for d in meter.due()] == [1]
