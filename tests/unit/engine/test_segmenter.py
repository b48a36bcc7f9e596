from __future__ import annotations

import numpy as np
import pytest

from bot.pipeline.vad import (
    EndReason,
    Segmenter,
    SegmenterOptions,
    UtteranceDiscarded,
    UtteranceEnded,
    UtterancePaused,
    UtteranceResumed,
    UtteranceStarted,
)
from tests.unit.engine.fakes import AmplitudeVad, silence, tone

SR = 16_000


def run(segmenter: Segmenter, *chunks: np.ndarray, flush: bool = True) -> list[object]:
    events: list[object] = []
    for chunk in chunks:
        # feed in odd-sized pieces: the segmenter must not depend on chunk boundaries
        for i in range(0, len(chunk), 333):
            events.extend(segmenter.push(chunk[i : i + 333]))
    if flush:
        events.extend(segmenter.flush())
    return events


def test_silence_yields_nothing() -> None:
    assert run(Segmenter(AmplitudeVad()), silence(5.0)) == []  # type: ignore[arg-type]


def test_one_utterance_with_pre_roll_and_trimmed_silence() -> None:
    opts = SegmenterOptions(pre_roll_ms=320, min_silence_ms=480, post_roll_ms=96)
    seg = Segmenter(AmplitudeVad(), opts)  # type: ignore[arg-type]
    events = run(seg, silence(1.0), tone(1.5), silence(1.0))
    started = [e for e in events if isinstance(e, UtteranceStarted)]
    ended = [e for e in events if isinstance(e, UtteranceEnded)]
    assert len(started) == 1 and len(ended) == 1
    end = ended[0]
    assert end.reason is EndReason.SILENCE
    # speech starts at 1.0 s; the utterance keeps ~320 ms before it
    assert abs(end.start_sample - (SR * 1.0 - 0.32 * SR)) <= 512
    # it ends ~96 ms after the last speech window, not after the whole silence
    assert abs(end.speech_end_sample - 2.5 * SR) <= 512
    assert end.end_sample - end.speech_end_sample <= 0.096 * SR + 1
    assert len(end.audio) == end.end_sample - end.start_sample


def test_short_pause_does_not_split_but_long_one_does() -> None:
    opts = SegmenterOptions(min_silence_ms=500)
    events = run(
        Segmenter(AmplitudeVad(), opts),  # type: ignore[arg-type]
        tone(1.0),
        silence(0.3),
        tone(1.0),
        silence(0.8),
        tone(1.0),
    )
    ended = [e for e in events if isinstance(e, UtteranceEnded)]
    assert [e.reason for e in ended] == [EndReason.SILENCE, EndReason.END_OF_STREAM]
    assert [e.index for e in ended] == [0, 1]


def test_blip_shorter_than_min_speech_is_discarded() -> None:
    opts = SegmenterOptions(min_speech_ms=250)
    events = run(Segmenter(AmplitudeVad(), opts), silence(0.5), tone(0.1), silence(1.0))  # type: ignore[arg-type]
    assert any(isinstance(e, UtteranceDiscarded) for e in events)
    assert not any(isinstance(e, UtteranceEnded) for e in events)


def test_long_speech_is_cut_at_max_length_at_the_quietest_window() -> None:
    opts = SegmenterOptions(max_utterance_s=4.0, min_silence_ms=800, cut_search_s=2.0)
    # a 0.2 s dip (below threshold, shorter than min silence) sits 3 s in: the cut goes there
    speech = np.concatenate([tone(3.0), tone(0.2, amplitude=0.1), tone(3.0)])
    events = run(Segmenter(AmplitudeVad(), opts), speech)  # type: ignore[arg-type]
    ended = [e for e in events if isinstance(e, UtteranceEnded)]
    assert ended[0].reason is EndReason.MAX_LENGTH
    assert 3.0 * SR <= ended[0].end_sample <= 3.2 * SR + 512
    # nothing is lost: the next utterance starts exactly at the cut
    assert ended[1].start_sample == ended[0].end_sample
    assert sum(len(e.audio) for e in ended) >= len(speech) - 512


def test_utterance_audio_is_available_while_speaking() -> None:
    seg = Segmenter(AmplitudeVad())  # type: ignore[arg-type]
    run(seg, tone(1.0), flush=False)
    assert seg.in_speech
    assert seg.utterance_samples() == len(seg.utterance_audio()) >= SR * 0.9


@pytest.mark.parametrize(
    "kwargs",
    [{"threshold": 1.5}, {"min_silence_ms": 10}, {"max_utterance_s": 0.5}, {"pre_roll_ms": -1}],
)
def test_invalid_options_are_rejected(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        SegmenterOptions(**kwargs)  # type: ignore[arg-type]


def test_past_the_soft_length_a_short_pause_ends_the_utterance() -> None:
    opts = SegmenterOptions(
        min_silence_ms=500, soft_max_utterance_s=3.0, soft_min_silence_ms=160, max_utterance_s=15.0
    )
    speech = [tone(2.0), silence(0.25), tone(2.0), silence(0.25), tone(1.0)]
    events = run(Segmenter(AmplitudeVad(), opts), *speech)  # type: ignore[arg-type]
    ended = [e for e in events if isinstance(e, UtteranceEnded)]
    # the first 0.25 s pause comes before the soft length: it does not split; the second does
    assert [e.reason for e in ended] == [EndReason.SILENCE, EndReason.END_OF_STREAM]
    assert abs(ended[0].speech_end_sample - 4.25 * SR) <= 600


def test_a_short_utterance_waits_for_a_longer_pause_then_ends_with_the_next_phrase() -> None:
    opts = SegmenterOptions(
        min_silence_ms=400, pre_roll_ms=300, short_utterance_s=3.0, short_min_silence_ms=1500
    )
    # "And so my fellow Americans" (2.3 s) - 1.0 s - "ask not" (1.2 s) - 1.0 s - a long phrase
    speech = [tone(2.3), silence(1.0), tone(1.2), silence(1.0), tone(4.0), silence(1.0)]
    events = run(Segmenter(AmplitudeVad(), opts), silence(0.5), *speech)  # type: ignore[arg-type]
    ended = [e for e in events if isinstance(e, UtteranceEnded)]
    # the two short phrases become one utterance (4.5 s); past 3 s the usual 0.4 s pause ends it
    assert len(ended) == 2
    assert abs(ended[0].speech_end_sample - (0.5 + 2.3 + 1.0 + 1.2) * SR) <= 600
    assert abs(ended[1].speech_end_sample - (0.5 + 2.3 + 1.0 + 1.2 + 1.0 + 4.0) * SR) <= 600


def test_a_short_utterance_ends_after_the_longer_pause() -> None:
    opts = SegmenterOptions(min_silence_ms=400, short_utterance_s=3.0, short_min_silence_ms=1500)
    events = run(
        Segmenter(AmplitudeVad(), opts),  # type: ignore[arg-type]
        tone(1.0),
        silence(1.7),
        tone(1.0),
        silence(1.7),
        flush=False,
    )
    ended = [e for e in events if isinstance(e, UtteranceEnded)]
    assert [e.reason for e in ended] == [EndReason.SILENCE, EndReason.SILENCE]
    # the pause is announced (the final decode starts) as early as for any utterance
    paused = [e for e in events if isinstance(e, UtterancePaused)]
    assert len(paused) == 2 and paused[0].end_sample == ended[0].end_sample


class CountingVad(AmplitudeVad):
    def __init__(self) -> None:
        self.calls = 0

    def probability(self, window: np.ndarray) -> float:
        self.calls += 1
        return super().probability(window)


def test_digital_silence_skips_the_model() -> None:
    vad = CountingVad()
    seg = Segmenter(vad)  # type: ignore[arg-type]
    run(seg, silence(3.0), tone(1.0, amplitude=0.9))
    # 3 s of zeros never reach the model; the tone's ~31 windows do
    assert 25 <= vad.calls <= 35


def timed(segmenter: Segmenter, *chunks: np.ndarray) -> list[tuple[int, object]]:
    """Events with the number of samples pushed when each came out (fed 10 ms at a time)."""
    out: list[tuple[int, object]] = []
    pushed = 0
    for chunk in chunks:
        for i in range(0, len(chunk), 160):
            piece = chunk[i : i + 160]
            pushed += len(piece)
            out.extend((pushed, e) for e in segmenter.push(piece))
    return out


def test_a_pause_announces_the_final_audio_before_the_end_is_certain() -> None:
    opts = SegmenterOptions(min_silence_ms=400, post_roll_ms=96)
    events = timed(Segmenter(AmplitudeVad(), opts), tone(1.5), silence(1.0))  # type: ignore[arg-type]
    kinds = [type(e) for _, e in events]
    assert kinds == [UtteranceStarted, UtterancePaused, UtteranceEnded]
    (paused_at, paused), (ended_at, ended) = events[1], events[2]
    assert isinstance(paused, UtterancePaused) and isinstance(ended, UtteranceEnded)
    # the pause comes once the post-roll is covered, ~0.3 s before the end is certain
    speech_end = 1.5 * SR
    assert paused_at - speech_end <= 0.096 * SR + 2 * 512
    assert ended_at - paused_at >= 0.25 * SR
    # and it carries exactly the audio the end will
    assert (paused.index, paused.start_sample, paused.end_sample) == (
        ended.index,
        ended.start_sample,
        ended.end_sample,
    )
    assert np.array_equal(paused.audio, ended.audio)


def test_speech_after_a_pause_takes_it_back() -> None:
    opts = SegmenterOptions(min_silence_ms=400, post_roll_ms=96)
    seg = Segmenter(AmplitudeVad(), opts)  # type: ignore[arg-type]
    events = [e for _, e in timed(seg, tone(1.0), silence(0.25), tone(1.0), silence(1.0))]
    kinds = [type(e) for e in events]
    assert kinds == [
        UtteranceStarted,
        UtterancePaused,
        UtteranceResumed,
        UtterancePaused,
        UtteranceEnded,
    ]
    first, last, ended = events[1], events[3], events[4]
    assert isinstance(first, UtterancePaused) and isinstance(last, UtterancePaused)
    assert isinstance(ended, UtteranceEnded)
    assert first.end_sample < last.end_sample == ended.end_sample
    assert np.array_equal(last.audio, ended.audio)


def test_a_blip_is_never_announced_as_a_pause() -> None:
    opts = SegmenterOptions(min_speech_ms=250)
    events = run(Segmenter(AmplitudeVad(), opts), silence(0.5), tone(0.1), silence(1.0))  # type: ignore[arg-type]
    assert [type(e) for e in events] == [UtteranceStarted, UtteranceDiscarded]
