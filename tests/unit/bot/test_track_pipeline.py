"""A track pipeline: audio in, captions to its sinks, usage to the meter; failures stay local."""

from __future__ import annotations

import asyncio

import pytest

from bot.pipeline.engine import SpeechEngine
from bot.pipeline.track import TrackPipeline
from bot.pipeline.usage import UsageMeter
from tests.unit.bot.fakes import ArraySource, ListSink, engine, speaker, speech


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
