"""The usage meter turns cumulative stream counts into checkpoint increments."""

from __future__ import annotations

import pytest

from bot.pipeline.engine import StreamStats
from bot.pipeline.usage import UsageMeter


def stats(
    audio_s: float, finals: int = 0, *, speech_s: float = 0.0, partials: int = 0, errors: int = 0
) -> StreamStats:
    return StreamStats(
        audio_s=audio_s, speech_s=speech_s, partials=partials, finals=finals, errors=errors
    )


def test_increments_are_what_was_not_written_yet() -> None:
    meter = UsageMeter()
    meter.start("TR_1")
    meter.record("TR_1", 1, stats(2.0, 1, speech_s=1.5, partials=3))
    [first] = meter.due()
    assert (first.audio_s, first.speech_s, first.partials, first.finals, first.ended) == (
        2.0,
        1.5,
        3,
        1,
        False,
    )
    meter.confirm([first])
    meter.record("TR_1", 1, stats(5.0, 2, speech_s=3.0, partials=4, errors=1))
    [second] = meter.due()
    assert second.audio_s == pytest.approx(3.0)
    assert second.speech_s == pytest.approx(1.5)
    assert (second.partials, second.finals, second.errors) == (1, 1, 1)


def test_an_unconfirmed_checkpoint_is_offered_again_whole() -> None:
    meter = UsageMeter()
    meter.start("TR_1")
    meter.record("TR_1", 1, stats(1.0))
    assert [d.audio_s for d in meter.due()] == [1.0]  # the write failed: not confirmed
    meter.record("TR_1", 1, stats(4.0))
    assert [d.audio_s for d in meter.due()] == [4.0]


def test_nothing_new_nothing_due() -> None:
    meter = UsageMeter()
    meter.start("TR_1")
    assert meter.due() == []
    meter.record("TR_1", 1, stats(1.0))
    meter.confirm(meter.due())
    assert meter.due() == []


def test_streams_of_one_track_add_up_across_mute_and_unmute() -> None:
    meter = UsageMeter()
    meter.start("TR_1")
    meter.record("TR_1", 1, stats(3.0, 1))
    meter.stop("TR_1")  # muted
    [ended] = meter.due()
    assert (ended.audio_s, ended.finals, ended.ended) == (3.0, 1, True)
    meter.confirm([ended])
    assert meter.due() == [], "an ended track is closed once"
    meter.start("TR_1")  # unmuted: a new stream counts from zero
    meter.record("TR_1", 2, stats(2.0, 1))
    [more] = meter.due()
    assert (more.audio_s, more.finals, more.ended) == (2.0, 1, False)


def test_a_stopped_track_is_reported_ended_even_without_new_usage() -> None:
    meter = UsageMeter()
    meter.start("TR_1")
    meter.stop("TR_1")  # refused by a quota, say
    [delta] = meter.due()
    assert (delta.audio_s, delta.finals, delta.ended) == (0.0, 0, True)


def test_a_stop_during_a_write_is_not_lost() -> None:
    meter = UsageMeter()
    meter.start("TR_1")
    meter.record("TR_1", 1, stats(1.0))
    written = meter.due()
    meter.stop("TR_1")  # while the write was under way
    meter.confirm(written)
    [delta] = meter.due()
    assert (delta.audio_s, delta.ended) == (0.0, True)


def test_live_tracks_and_tracks_kept_apart() -> None:
    meter = UsageMeter()
    meter.start("TR_1")
    meter.start("TR_2")
    meter.record("TR_1", 1, stats(1.0))
    meter.record("TR_2", 2, stats(2.0))
    meter.stop("TR_2")
    assert meter.live_tracks == 1
    assert {(d.track_sid, d.audio_s, d.ended) for d in meter.due()} == {
        ("TR_1", 1.0, False),
        ("TR_2", 2.0, True),
    }
