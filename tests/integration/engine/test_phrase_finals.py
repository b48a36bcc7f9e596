"""Phrase finals on a real continuous reading, real weights.

The LibriVox reading of Sonnet 1 (53 s) is continuous speech: with phrase finals off, the VAD
ends few utterances inside it (its 0.5 s pauses hold 100-350 ms of VAD silence), so each final
covers up to a ~10 s span. With them on, pauses inside those utterances commit finals of their
own; the finals' text must be as good as before.

The audio is fed in lockstep with the decoder (each 20 ms frame waits until every decode it
asked for is done), so what is committed does not depend on how fast this machine decodes.
Measured on this machine (base, 2026-12-07): WER 0.168 with phrase finals off (10 finals),
0.140 on (15 finals, 7 of them phrase finals). The ceiling is the off value plus a little noise;
the committed count is about half the measured one.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from faster_whisper import WhisperModel

from bot.config import EngineSettings
from bot.evaluation import wer
from bot.pipeline.asr import DecodeRequest, Hypothesis, WhisperRecognizer
from bot.pipeline.audio import read_file_audio
from bot.pipeline.engine import SpeechEngine, StreamStats
from bot.pipeline.models import resolve_model
from bot.pipeline.types import Caption
from bot.pipeline.vad import SileroVad
from tests.integration.engine.conftest import final_text, load
from tests.integration.engine.test_room_audio import RECORDINGS, ROOM, assert_no_word_lost

pytestmark = pytest.mark.slow

ITEM = "en_librivox_sonnet001"


class CountingRecognizer:
    """The real recognizer, counting the decodes under way (the feed waits for none)."""

    def __init__(self, inner: WhisperRecognizer) -> None:
        self._inner = inner
        self.model_name = inner.model_name
        self.multilingual = inner.multilingual
        self._lock = threading.Lock()
        self.running = 0

    def decode_batch(self, requests: Sequence[DecodeRequest]) -> list[Hypothesis]:
        with self._lock:
            self.running += 1
        try:
            return self._inner.decode_batch(requests)
        finally:
            with self._lock:
                self.running -= 1


def lockstep_captions(
    recognizer: WhisperRecognizer, vad: SileroVad, audio: np.ndarray, *, phrase_finals: bool
) -> tuple[list[Caption], StreamStats]:
    async def run() -> tuple[list[Caption], StreamStats]:
        counting = CountingRecognizer(recognizer)
        options = replace(EngineSettings().stream_options(), phrase_finals=phrase_finals)
        engine = SpeechEngine(counting, vad, stream_options=options)
        scheduler = engine.scheduler
        stream = engine.open_stream("test")
        out: list[Caption] = []

        async def consume() -> None:
            async for c in stream.captions():
                out.append(c)

        def busy() -> bool:
            return bool(scheduler.pending_finals or scheduler.pending_partials or counting.running)

        task = asyncio.create_task(consume())
        for i in range(0, len(audio), 320):
            await stream.push_audio(audio[i : i + 320])
            idle_checks = 0
            while idle_checks < 2:  # twice: a batch handed to the thread is not counted yet
                await asyncio.sleep(0.002)
                idle_checks = 0 if busy() else idle_checks + 1
        await stream.end_input()
        await asyncio.wait_for(task, 300)
        await engine.aclose()
        return out, stream.stats

    return asyncio.run(run())


Reading = tuple[list[Caption], StreamStats]


@pytest.fixture(scope="module")
def reading(
    base: WhisperRecognizer, vad: SileroVad, eval_dir: Path
) -> tuple[np.ndarray, Reading, Reading]:
    """The sonnet's audio, and its captions with phrase finals off and on (lockstep)."""
    audio, _ = load(eval_dir, ITEM)
    before = lockstep_captions(base, vad, audio, phrase_finals=False)
    after = lockstep_captions(base, vad, audio, phrase_finals=True)
    return audio, before, after


def test_a_continuous_reading_gets_several_phrase_finals_as_accurate_as_before(
    reading: tuple[np.ndarray, Reading, Reading], eval_dir: Path
) -> None:
    _, reference = load(eval_dir, ITEM)
    reference = reference.split("\n", 1)[1]  # the sonnet's number: the reader says "Sonnet 1"
    _, (before, before_stats), (after, after_stats) = reading
    wer_before = wer(reference, final_text(before))
    wer_after = wer(reference, final_text(after))
    assert before_stats.phrase_finals == 0
    assert after_stats.phrase_finals >= PHRASE_FINALS_AT_LEAST
    assert after_stats.finals > before_stats.finals
    assert wer_before <= WER_CEILING
    assert wer_after <= WER_CEILING
    assert wer_after <= wer_before + 0.01  # no worse than the same feed without them


PHRASE_FINALS_AT_LEAST = 4
WER_CEILING = 0.19


def test_finals_cut_at_words_join_up_to_the_offline_decode(
    reading: tuple[np.ndarray, Reading, Reading], base_offline: WhisperModel
) -> None:
    """Cuts at a clause's punctuation with a VAD dip after it (no pause the VAD reports) add
    finals inside the reading; joined, the finals still read like the offline decode of the
    whole file (faster-whisper's ``transcribe``, beam 5, same weights), as closely as the
    utterance-long finals of phrase finals off do, give or take two words in a hundred.

    The bound is relative, not absolute: offline beam 5 is itself 0.08 from the reference, our
    streaming beam 1 differs from it by ~0.13-0.15 on this old-English reading ("Feed'st thy
    light's flame", "self-substantial") whatever the cuts. Measured on this machine (base,
    lockstep, 2026-12-07): WER vs offline 0.148 off (10 finals), 0.130 with phrase finals at VAD
    pauses only (15), 0.139 with word cuts too (17 finals, 2 at words): one word of ~108 from
    the VAD-only policy, within the two-in-a-hundred allowed over the off value.
    """
    audio, (before, _), (after, after_stats) = reading
    segments, _ = base_offline.transcribe(audio, beam_size=5, language="en")
    offline = " ".join(s.text.strip() for s in segments)
    assert after_stats.word_cut_finals >= 1
    assert sum(1 for c in after if c.is_final and c.text) >= 10
    wer_before = wer(offline, final_text(before))
    wer_after = wer(offline, final_text(after))
    assert wer_after <= wer_before + OFFLINE_WER_NOISE, (wer_before, wer_after)


OFFLINE_WER_NOISE = 0.02  # two words in a hundred


@pytest.fixture(scope="module")
def base_offline(tmp_path_factory: pytest.TempPathFactory) -> WhisperModel:
    tmp = tmp_path_factory.mktemp("offline")
    resolved = resolve_model("base", cache_dir=tmp)
    return WhisperModel(resolved.path_or_hub_name, device="cpu", compute_type="int8")


@pytest.mark.parametrize("recording", RECORDINGS)
def test_phrase_finals_keep_the_words_short_phrases_lose_alone(
    recording: str, tiny_en: WhisperRecognizer, base: WhisperRecognizer, vad: SileroVad
) -> None:
    """JFK through a room: "Americans" / "ask not" decoded alone lose words (test_room_audio.py
    feeds without partials, where phrase finals never start). With partials and phrase finals
    on, the pause's decode is not confirmed by the speech after it (measured: no phrase final
    in any of these recordings, tiny.en and base), so no word is lost."""
    audio = read_file_audio(ROOM / recording)
    for recognizer in (tiny_en, base):
        captions, _ = lockstep_captions(recognizer, vad, audio, phrase_finals=True)
        assert_no_word_lost(final_text(captions))
