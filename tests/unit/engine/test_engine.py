from __future__ import annotations

import asyncio
import itertools
import threading

import numpy as np
import pytest

from bot.evaluation import number_words
from bot.pipeline.asr import DecodeRequest
from bot.pipeline.engine import SpeechEngine, StreamOptions, StreamTranscriber
from bot.pipeline.types import Caption
from bot.pipeline.vad import SegmenterOptions
from tests.unit.engine.fakes import AmplitudeVad, ScriptedRecognizer, silence, tone


class _FakeSileroVad:
    def stream(self) -> AmplitudeVad:
        return AmplitudeVad()


def growing_text(request: DecodeRequest) -> str:
    """More words the longer the audio: like a real decoder on a growing utterance."""
    words = [number_words(i) for i in range(1, 13)]
    n = max(1, int(len(request.audio) / 16_000 * 2))
    return " ".join(words[:n])


def collect(stream: StreamTranscriber) -> tuple[list[Caption], asyncio.Task[None]]:
    """The stream's captions as they come, and the task that gathers them."""
    got: list[Caption] = []

    async def consume() -> None:
        async for c in stream.captions():
            got.append(c)

    return got, asyncio.create_task(consume())


async def transcribe(
    engine: SpeechEngine, audio: np.ndarray, *, realtime_step_s: float = 0.0
) -> list[Caption]:
    stream = engine.open_stream("t")
    captions, consumer = collect(stream)
    for i in range(0, len(audio), 320):
        await stream.push_audio(audio[i : i + 320])
        await asyncio.sleep(realtime_step_s)
    await stream.end_input()
    await asyncio.wait_for(consumer, 10)
    await engine.aclose()
    return captions


def make_engine(rec: ScriptedRecognizer, **opts: object) -> SpeechEngine:
    defaults: dict[str, object] = {"partial_interval_ms": 300, "min_partial_audio_ms": 500}
    options = StreamOptions(
        segmenter=SegmenterOptions(min_silence_ms=400),
        **{**defaults, **opts},  # type: ignore[arg-type]
    )
    return SpeechEngine(rec, _FakeSileroVad(), stream_options=options)  # type: ignore[arg-type]


async def test_partials_then_a_final_with_the_same_utterance_id() -> None:
    rec = ScriptedRecognizer(growing_text)
    audio = np.concatenate([silence(0.5), tone(3.0), silence(1.0), tone(2.0), silence(1.0)])
    captions = await transcribe(make_engine(rec), audio, realtime_step_s=0.002)
    finals = [c for c in captions if c.is_final]
    assert len(finals) == 2
    assert len({c.utterance_id for c in finals}) == 2
    for final in finals:
        mine = [c for c in captions if c.utterance_id == final.utterance_id]
        assert mine[-1] is final, "the final closes its utterance"
        assert all(not c.is_final for c in mine[:-1])
        assert len(mine) >= 2, "partials come before the final"
        # the stable prefix only grows
        stables = [c.stable_text for c in mine[:-1]]
        for a, b in itertools.pairwise(stables):
            assert b.startswith(a)
    assert finals[0].end_ms < finals[1].start_ms
    assert finals[0].words and finals[0].words[0].start_ms >= finals[0].start_ms


async def test_fast_feed_without_partials_yields_only_finals() -> None:
    rec = ScriptedRecognizer(growing_text)
    audio = np.concatenate([tone(2.0), silence(1.0), tone(2.0)])
    captions = await transcribe(make_engine(rec, emit_partials=False), audio)
    assert [c.is_final for c in captions] == [True, True]


async def test_silence_yields_no_caption_and_no_decode() -> None:
    rec = ScriptedRecognizer(growing_text)
    captions = await transcribe(make_engine(rec), silence(5.0))
    assert captions == []
    assert rec.batches == []


async def test_rejected_final_closes_shown_partials_with_empty_text() -> None:
    def script(r: DecodeRequest) -> str:
        return "" if r.final else "maybe words"

    captions = await transcribe(
        make_engine(ScriptedRecognizer(script)), tone(2.0), realtime_step_s=0.002
    )
    assert captions[-1].is_final and captions[-1].text == ""
    assert any(not c.is_final and c.text == "maybe words" for c in captions)


async def test_a_decode_error_costs_one_utterance_not_the_stream() -> None:
    rec = ScriptedRecognizer(growing_text)
    engine = make_engine(rec, emit_partials=False)
    # the first utterance (the shorter one) always fails to decode
    rec.fail_when = lambda r: len(r.audio) < 2.0 * 16_000
    audio = np.concatenate([tone(1.5), silence(1.0), tone(2.5)])
    stream = engine.open_stream("t")
    got, task = collect(stream)
    for i in range(0, len(audio), 320):
        await stream.push_audio(audio[i : i + 320])
    await stream.end_input()
    await asyncio.wait_for(task, 10)
    await engine.aclose()
    assert [c.is_final for c in got] == [True]
    assert stream.stats.errors == 1
    assert stream.stats.finals == 1


async def test_usage_stats_count_audio_and_speech() -> None:
    rec = ScriptedRecognizer(growing_text)
    engine = make_engine(rec, emit_partials=False)
    stream = engine.open_stream()
    for chunk in (silence(1.0), tone(2.0), silence(1.0)):
        await stream.push_audio(chunk)
    await stream.end_input()
    async for _ in stream.captions():
        pass
    await engine.aclose()
    assert abs(stream.stats.audio_s - 4.0) < 1e-6
    assert 2.0 <= stream.stats.speech_s <= 2.8


def length_text(request: DecodeRequest) -> str:
    """A text that names the audio's length: which decode produced a caption shows."""
    return f"{'final' if request.want_words else 'partial'} {len(request.audio)}"


async def _settle(engine: SpeechEngine) -> None:
    for _ in range(100):
        if engine.scheduler.pending_finals == 0 and engine.scheduler.pending_partials == 0:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)


async def _push(stream: StreamTranscriber, audio: np.ndarray) -> None:
    for i in range(0, len(audio), 320):
        await stream.push_audio(audio[i : i + 320])


async def test_the_final_decode_starts_at_the_pause_and_is_the_final() -> None:
    rec = ScriptedRecognizer(length_text)
    engine = make_engine(rec, emit_partials=False)
    stream = engine.open_stream("t")
    got, task = collect(stream)
    await _push(stream, np.concatenate([tone(2.0), silence(0.2)]))  # a pause, not yet the end
    await _settle(engine)
    decoded = [r for b in rec.batches for r in b]
    assert [r.final for r in decoded] == [True], "the final decode ran during the pause"
    assert got == [], "but no final is published before the end is certain"
    await _push(stream, silence(1.0))
    await stream.end_input()
    await asyncio.wait_for(task, 10)
    await engine.aclose()
    assert len([r for b in rec.batches for r in b]) == 1, "the end reuses that decode"
    assert [c.text for c in got] == [f"final {len(decoded[0].audio)}"]
    assert stream.stats.speculative_finals == stream.stats.speculative_finals_used == 1


async def test_without_speculation_the_final_decode_waits_for_the_end() -> None:
    rec = ScriptedRecognizer(length_text)
    engine = make_engine(rec, emit_partials=False, speculative_finals=False)
    stream = engine.open_stream("t")
    await _push(stream, np.concatenate([tone(2.0), silence(0.2)]))
    await _settle(engine)
    assert rec.batches == []
    await _push(stream, silence(1.0))
    await stream.end_input()
    assert [c.is_final async for c in stream.captions()] == [True]
    await engine.aclose()


async def test_speech_after_a_pause_withdraws_a_speculation_not_yet_started() -> None:
    gate = threading.Event()
    rec = ScriptedRecognizer(length_text, gate=gate)
    engine = make_engine(rec, emit_partials=False)
    blocker = engine.scheduler.submit_partial("other", DecodeRequest(audio=tone(1.0)))
    await asyncio.sleep(0.05)  # the decode thread is busy with another stream
    stream = engine.open_stream("t")
    await _push(stream, np.concatenate([tone(1.0), silence(0.2), tone(1.0)]))
    assert engine.scheduler.pending_finals == 0, "the speculation was withdrawn"
    await _push(stream, silence(1.0))
    gate.set()
    await stream.end_input()
    finals = [c async for c in stream.captions()]
    await blocker
    await engine.aclose()
    decoded = [r for b in rec.batches for r in b if r.final]
    assert len(decoded) == 1, "only the real end was decoded"
    assert [c.text for c in finals] == [f"final {len(decoded[0].audio)}"]
    assert len(decoded[0].audio) > 2.0 * 16_000
    assert (stream.stats.speculative_finals, stream.stats.speculative_finals_used) == (2, 1)


async def test_a_speculation_already_decoding_when_speech_resumes_becomes_a_partial() -> None:
    gate = threading.Event()
    rec = ScriptedRecognizer(length_text, gate=gate)
    engine = make_engine(rec)
    stream = engine.open_stream("t")
    got, task = collect(stream)
    await _push(stream, np.concatenate([tone(0.4), silence(0.2)]))  # too short for a partial
    await _settle(engine)  # the speculative final is decoding (held at the gate)
    await _push(stream, np.concatenate([tone(0.3), silence(1.0)]))
    gate.set()
    await stream.end_input()
    await asyncio.wait_for(task, 10)
    await engine.aclose()
    finals = [r for b in rec.batches for r in b if r.final]
    assert len(finals) == 2
    assert [(c.is_final, c.text) for c in got] == [
        (False, f"final {len(finals[0].audio)}"),
        (True, f"final {len(finals[1].audio)}"),
    ]
    assert len({c.utterance_id for c in got}) == 1


def short_rule_engine(rec: ScriptedRecognizer, **opts: object) -> SpeechEngine:
    segmenter = SegmenterOptions(
        min_silence_ms=400, short_utterance_s=3.0, short_min_silence_ms=1500
    )
    options = StreamOptions(segmenter=segmenter, min_partial_audio_ms=5000, **opts)  # type: ignore[arg-type]
    return SpeechEngine(rec, _FakeSileroVad(), stream_options=options)  # type: ignore[arg-type]


async def test_a_short_utterance_shows_its_pause_decode_while_its_end_waits() -> None:
    rec = ScriptedRecognizer(length_text)
    engine = short_rule_engine(rec)
    stream = engine.open_stream("t")
    got, task = collect(stream)
    await _push(stream, np.concatenate([tone(1.0), silence(0.6)]))  # past 0.4 s: not yet the end
    await _settle(engine)
    decoded = [r for b in rec.batches for r in b]
    assert [r.final for r in decoded] == [True]
    text = f"final {len(decoded[0].audio)}"
    assert [(c.is_final, c.text) for c in got] == [(False, text)], "shown before the end"
    await _push(stream, silence(1.2))  # the long pause: the end
    await _settle(engine)
    assert [(c.is_final, c.text) for c in got] == [(False, text), (True, text)]
    assert len({c.utterance_id for c in got}) == 1
    assert len([r for b in rec.batches for r in b]) == 1, "one decode for both"
    await stream.end_input()
    await asyncio.wait_for(task, 10)
    await engine.aclose()


async def test_a_short_phrase_shown_at_its_pause_is_not_shown_twice_when_speech_resumes() -> None:
    rec = ScriptedRecognizer(length_text)
    engine = short_rule_engine(rec)
    stream = engine.open_stream("t")
    got, task = collect(stream)
    await _push(stream, np.concatenate([tone(1.0), silence(0.8)]))
    await _settle(engine)  # the pause's decode is done and shown
    await _push(stream, np.concatenate([tone(1.0), silence(2.0)]))
    await stream.end_input()
    await asyncio.wait_for(task, 10)
    await engine.aclose()
    finals = [r for b in rec.batches for r in b if r.final]
    assert [(c.is_final, c.text) for c in got] == [
        (False, f"final {len(finals[0].audio)}"),  # the first phrase, at its pause
        (False, f"final {len(finals[1].audio)}"),  # both phrases, at the second pause
        (True, f"final {len(finals[1].audio)}"),
    ]
    assert len({c.utterance_id for c in got}) == 1


async def test_a_long_utterance_is_not_shown_at_its_pause() -> None:
    rec = ScriptedRecognizer(length_text)
    engine = short_rule_engine(rec)
    captions = await transcribe(engine, np.concatenate([tone(3.5), silence(1.0)]))
    assert [c.is_final for c in captions] == [True], "its end comes 0.3 s after the pause"


async def test_no_partial_decode_starts_in_the_silence_that_ends_an_utterance() -> None:
    rec = ScriptedRecognizer(length_text)
    # frequent partials and no pause decode: the whole 400 ms of closing silence is exposed
    engine = make_engine(rec, partial_interval_ms=100, speculative_finals=False)
    audio = np.concatenate([tone(1.2), silence(1.0)])
    captions = await transcribe(engine, audio, realtime_step_s=0.002)
    partial_lengths = [len(r.audio) for b in rec.batches for r in b if not r.want_words]
    assert partial_lengths, "partials were decoded while speaking"
    # pre-roll (300 ms) + the tone + at most one window of silence
    assert max(partial_lengths) <= (0.3 + 1.2) * 16_000 + 512
    assert captions[-1].is_final


@pytest.mark.timeout(30)  # the regression this guards against is a hang
async def test_closing_a_stream_while_its_emitter_awaits_a_decode_returns() -> None:
    gate = threading.Event()
    rec = ScriptedRecognizer(length_text, gate=gate)
    engine = make_engine(rec, emit_partials=False)
    stream = engine.open_stream("t")
    # two utterances: the first's final is decoding (held at the gate), the second's waits
    await _push(stream, np.concatenate([tone(1.0), silence(0.6), tone(1.0), silence(0.6)]))
    await asyncio.sleep(0.05)
    await asyncio.wait_for(stream.aclose(), 2)  # the emitter stops, not waits for the next
    gate.set()
    await engine.aclose()


async def _push(stream: StreamTranscriber, audio: np.ndarray) -> None:
    for i in range(0, len(audio), 320):
        await stream.push_audio(audio[i : i + 320])


async def test_speaking_streams_counts_the_streams_inside_an_utterance() -> None:
    engine = make_engine(ScriptedRecognizer(growing_text))
    a, b = engine.open_stream("a"), engine.open_stream("b")
    (_, consume_a), (_, consume_b) = collect(a), collect(b)
    assert engine.speaking_streams == 0
    await _push(a, np.concatenate([silence(0.5), tone(1.0)]))
    assert engine.speaking_streams == 1, "a is speaking"
    await _push(b, np.concatenate([silence(0.5), tone(1.0)]))
    assert engine.speaking_streams == 2, "a and b are speaking"
    await _push(b, tone(0.5))
    assert engine.speaking_streams == 2, "a stream counts once however long it speaks"
    await _push(a, silence(1.0))
    assert engine.speaking_streams == 1, "a's utterance ended"
    await _push(a, np.concatenate([tone(0.1), silence(1.0)]))
    assert engine.speaking_streams == 1, "a blip starts and ends nothing that stays counted"
    await b.end_input()
    assert engine.speaking_streams == 0, "the end of b's input ends its utterance"
    await asyncio.wait_for(asyncio.gather(consume_b), 10)
    await _push(a, tone(1.0))
    assert engine.speaking_streams == 1
    await a.aclose()
    consume_a.cancel()
    assert engine.speaking_streams == 0, "a closed stream no longer speaks"
    await engine.aclose()


async def test_a_blip_too_short_for_speech_leaves_no_stream_speaking() -> None:
    engine = make_engine(ScriptedRecognizer(growing_text))
    stream = engine.open_stream("blip")
    _, consumer = collect(stream)
    await _push(stream, np.concatenate([silence(0.5), tone(0.1)]))
    assert engine.speaking_streams == 1, "the blip opened an utterance"
    await _push(stream, silence(1.0))
    assert engine.speaking_streams == 0, "the discarded blip is no longer speech"
    await stream.end_input()
    await asyncio.wait_for(consumer, 10)
    await engine.aclose()


async def _until_final(got: list[Caption]) -> None:
    """Wait (up to 10 s) for a final among the captions gathered so far."""
    for _ in range(1000):
        if any(c.is_final for c in got):
            return
        await asyncio.sleep(0.01)


async def test_an_early_final_goes_out_in_the_pause_and_the_certain_end_adds_nothing() -> None:
    rec = ScriptedRecognizer(length_text)
    engine = short_rule_engine(rec, early_final_ms=400)
    stream = engine.open_stream("t")
    got, task = collect(stream)
    # a short utterance: only 1.5 s of silence ends it; 0.6 s was fed
    await _push(stream, np.concatenate([tone(1.0), silence(0.6)]))
    await _until_final(got)
    decoded = [r for b in rec.batches for r in b]
    text = f"final {len(decoded[0].audio)}"
    assert [(c.is_final, c.text) for c in got] == [(False, text), (True, text)]
    await _push(stream, silence(1.2))  # now the end is certain
    await stream.end_input()
    await asyncio.wait_for(task, 10)
    await engine.aclose()
    assert [(c.is_final, c.text) for c in got] == [(False, text), (True, text)]
    assert len([r for b in rec.batches for r in b]) == 1, "one decode"
    assert (stream.stats.early_finals, stream.stats.finals) == (1, 1)


async def test_an_early_final_is_replaced_by_the_utterances_final_when_speech_resumes() -> None:
    rec = ScriptedRecognizer(length_text)
    engine = short_rule_engine(rec, early_final_ms=400)
    stream = engine.open_stream("t")
    got, task = collect(stream)
    await _push(stream, np.concatenate([tone(1.0), silence(0.8)]))
    await _until_final(got)  # the early final of the first phrase is out
    await _push(stream, np.concatenate([tone(1.0), silence(2.0)]))
    await stream.end_input()
    await asyncio.wait_for(task, 10)
    await engine.aclose()
    finals = [r for b in rec.batches for r in b if r.final]
    first, both = (f"final {len(f.audio)}" for f in finals)
    assert [(c.is_final, c.text) for c in got] == [
        (False, first),
        (True, first),  # early: the pause was not the end
        (False, both),
        (True, both),  # the same utterance id: it replaces the early one
    ]
    assert len({c.utterance_id for c in got}) == 1
    assert both != first
