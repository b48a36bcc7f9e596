"""Phrase finals: a pause inside a long utterance commits the words before it as a final once the
speech after the pause confirms them (bot/pipeline/engine.py, Segmenter.split)."""

from __future__ import annotations

import numpy as np

from bot.config import EngineSettings
from bot.pipeline.asr import DecodeRequest
from bot.pipeline.types import Caption
from bot.pipeline.vad import (
    EndReason,
    Segmenter,
    SegmenterOptions,
    UtteranceEnded,
    UtterancePaused,
    UtteranceResumed,
    UtteranceStarted,
)
from tests.unit.engine.fakes import AmplitudeVad, ScriptedRecognizer, silence, tone
from tests.unit.engine.test_engine import growing_text, make_engine, transcribe

SR = 16_000


def continuous(first_s: float = 2.0, pause_s: float = 0.25) -> np.ndarray:
    """Two phrases with a pause too short for the VAD to end the utterance (min 400 ms)."""
    return np.concatenate([silence(0.5), tone(first_s), silence(pause_s), tone(2.0), silence(1.0)])


def finals(captions: list[Caption]) -> list[Caption]:
    return [c for c in captions if c.is_final]


async def test_a_confirmed_pause_inside_an_utterance_commits_a_final_of_its_own() -> None:
    rec = ScriptedRecognizer(growing_text)
    captions = await transcribe(make_engine(rec), continuous(), realtime_step_s=0.002)
    done = finals(captions)
    assert len(done) == 2
    first, rest = done
    assert first.utterance_id != rest.utterance_id
    # The phrase's audio ends in the pause (0.5 + 2.0 s .. 2.75 s): no word is cut.
    assert 2500 <= first.end_ms <= 2750
    assert first.end_ms <= rest.start_ms
    # Its text is the decode of its own audio, which the speech after the pause confirmed.
    assert first.text == "one two three four"
    assert first.words and first.words[-1].end_ms <= first.end_ms
    # Order: the phrase's final comes before any caption of the rest.
    order = [c.utterance_id for c in captions]
    assert order.index(rest.utterance_id) > order.index(first.utterance_id)
    assert captions.index(first) < min(
        i for i, c in enumerate(captions) if c.utterance_id == rest.utterance_id
    )


async def test_off_the_utterance_waits_for_its_end() -> None:
    rec = ScriptedRecognizer(growing_text)
    engine = make_engine(rec, phrase_finals=False)
    captions = await transcribe(engine, continuous(), realtime_step_s=0.002)
    assert len(finals(captions)) == 1


async def test_words_the_following_speech_changes_are_not_committed() -> None:
    def script(r: DecodeRequest) -> str:
        # Alone (the pause's decode) the phrase loses a word that the context restores.
        return "is not" if r.final and len(r.audio) < 3 * SR else "ask not what your country"

    rec = ScriptedRecognizer(script)
    captions = await transcribe(make_engine(rec), continuous(), realtime_step_s=0.002)
    done = finals(captions)
    assert len(done) == 1
    assert done[0].text == "ask not what your country"


async def test_a_short_pause_is_not_a_phrase_boundary() -> None:
    rec = ScriptedRecognizer(growing_text)
    # 128 ms of silence: a pause the segmenter reports, shorter than phrase_min_pause_ms.
    captions = await transcribe(make_engine(rec), continuous(pause_s=0.15), realtime_step_s=0.002)
    assert len(finals(captions)) == 1


async def test_a_phrase_shorter_than_the_minimum_is_not_committed() -> None:
    rec = ScriptedRecognizer(growing_text)
    # 0.3 s pre-roll + 0.5 s of speech: under phrase_min_ms (1 s).
    captions = await transcribe(make_engine(rec), continuous(first_s=0.5), realtime_step_s=0.002)
    assert len(finals(captions)) == 1


def test_the_product_default_minimum_is_the_short_utterance_length() -> None:
    assert EngineSettings().stream_options().phrase_min_ms == 3000
    assert EngineSettings(vad_short_utterance_s=4.5).stream_options().phrase_min_ms == 4500
    assert EngineSettings(vad_short_utterance_s=0).stream_options().phrase_min_ms == 1000
    assert EngineSettings(phrase_min_ms=1200).stream_options().phrase_min_ms == 1200


async def test_a_phrase_the_short_utterance_rule_keeps_with_its_neighbour_is_not_committed() -> (
    None
):
    """JFK's "And so my fellow Americans" (2.3 s) then "ask not": committed at the pause, the
    short phrase after it was decoded alone ("is not." through the room)."""
    rec = ScriptedRecognizer(growing_text)
    minimum = EngineSettings().stream_options().phrase_min_ms
    short = continuous(first_s=2.0)  # 0.3 s pre-roll + 2 s: a short utterance at the pause
    engine = make_engine(rec, phrase_min_ms=minimum)
    assert len(finals(await transcribe(engine, short, realtime_step_s=0.002))) == 1
    # past the short-utterance length, the same pause commits a phrase final
    engine = make_engine(rec, phrase_min_ms=minimum)
    long = continuous(first_s=3.0)
    assert len(finals(await transcribe(engine, long, realtime_step_s=0.002))) == 2


async def test_the_pause_decode_is_not_decoded_again_for_the_phrase_final() -> None:
    rec = ScriptedRecognizer(growing_text)
    await transcribe(make_engine(rec), continuous(), realtime_step_s=0.002)
    finals_decoded = [r for batch in rec.batches for r in batch if r.final]
    # the pause's decode (the phrase final) and the rest's final; nothing else
    assert len(finals_decoded) == 2


def test_resumed_reports_the_pause_length() -> None:
    seg = Segmenter(AmplitudeVad(), SegmenterOptions(min_silence_ms=400))  # type: ignore[arg-type]
    events = seg.push(np.concatenate([tone(1.024), silence(0.256), tone(0.5)]))
    resumed = [e for e in events if isinstance(e, UtteranceResumed)]
    assert [e.pause_ms for e in resumed] == [256]


def test_split_ends_the_utterance_at_the_pause_and_continues_with_the_rest() -> None:
    seg = Segmenter(AmplitudeVad(), SegmenterOptions(min_silence_ms=400))  # type: ignore[arg-type]
    events = seg.push(np.concatenate([silence(0.5), tone(1.5), silence(0.256), tone(1.0)]))
    paused = next(e for e in events if isinstance(e, UtterancePaused))
    before = seg.utterance_audio()
    split = seg.split(paused.end_sample)
    assert [type(e) for e in split] == [UtteranceEnded, UtteranceStarted]
    ended, started = split
    assert isinstance(ended, UtteranceEnded) and isinstance(started, UtteranceStarted)
    assert ended.reason is EndReason.PHRASE
    assert ended.end_sample == paused.end_sample == started.start_sample
    np.testing.assert_array_equal(ended.audio, paused.audio)
    # nothing lost, nothing repeated
    np.testing.assert_array_equal(np.concatenate([ended.audio, seg.utterance_audio()]), before)
    assert seg.utterance_start_sample == paused.end_sample
    rest = seg.push(silence(1.0)) + seg.flush()
    assert [type(e) for e in rest if isinstance(e, UtteranceEnded)] == [UtteranceEnded]


def test_split_refuses_a_point_outside_the_utterance_or_inside_a_pause() -> None:
    seg = Segmenter(AmplitudeVad(), SegmenterOptions(min_silence_ms=400))  # type: ignore[arg-type]
    seg.push(np.concatenate([silence(0.5), tone(1.5)]))
    start = seg.utterance_start_sample
    assert seg.split(start) == []
    assert seg.split(start + seg.utterance_samples()) == []
    seg.push(silence(0.2))  # a pause is open: its decode stands for the audio up to here
    assert seg.split(start + SR) == []
