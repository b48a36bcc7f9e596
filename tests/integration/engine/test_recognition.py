"""The streaming engine on real weights and real recordings.

WER ceilings were set from measurement (streaming finals, this machine, 2025-11-23):
tiny.en / JFK 0.00, base / LibriSpeech 0.00, base / Russian 0.33 (offline full-window 0.11:
the streaming segmentation splits the 5.7 s clip, which costs context). Each ceiling leaves
room for run-to-run noise but fails on a real regression.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from bot.evaluation import wer
from bot.pipeline.asr import WhisperRecognizer
from bot.pipeline.types import SAMPLE_RATE_HZ
from bot.pipeline.vad import SileroVad
from tests.integration.engine.conftest import final_text, load, stream_captions

pytestmark = pytest.mark.slow


def test_tiny_en_on_jfk(tiny_en: WhisperRecognizer, vad: SileroVad, eval_dir: Path) -> None:
    audio, reference = load(eval_dir, "en_jfk_inaugural")
    captions = stream_captions(tiny_en, vad, audio)
    assert wer(reference, final_text(captions)) <= 0.10
    finals = [c for c in captions if c.is_final]
    assert all(c.language == "en" for c in finals)
    # times are on the stream's clock and ordered
    assert all(a.end_ms <= b.start_ms for a, b in itertools.pairwise(finals))
    assert finals[-1].end_ms <= len(audio) * 1000 // SAMPLE_RATE_HZ
    words = [w for c in finals for w in c.words]
    assert words and all(
        c.start_ms <= w.start_ms <= w.end_ms <= c.end_ms + 100 for c in finals for w in c.words
    )
    assert all(0.0 < c.confidence <= 1.0 for c in finals)


def test_base_on_librispeech(base: WhisperRecognizer, vad: SileroVad, eval_dir: Path) -> None:
    audio, reference = load(eval_dir, "en_librispeech_1272-128104-0000")
    assert wer(reference, final_text(stream_captions(base, vad, audio))) <= 0.10


def test_base_detects_and_transcribes_russian(
    base: WhisperRecognizer, vad: SileroVad, eval_dir: Path
) -> None:
    audio, reference = load(eval_dir, "ru_deepspeech_sample")
    captions = stream_captions(base, vad, audio)
    assert wer(reference, final_text(captions)) <= 0.45
    assert {c.language for c in captions if c.is_final} == {"ru"}


def test_partials_grow_into_the_final(
    tiny_en: WhisperRecognizer, vad: SileroVad, eval_dir: Path
) -> None:
    audio, _ = load(eval_dir, "en_librispeech_1272-128104-0000")
    captions = stream_captions(tiny_en, vad, audio, partials=True)
    finals = [c for c in captions if c.is_final and c.text]
    partials = [c for c in captions if not c.is_final]
    assert partials, "partials are emitted while speech goes on"
    for p in partials:
        assert p.utterance_id in {f.utterance_id for f in finals}
    for f in finals:
        mine = [c for c in captions if c.utterance_id == f.utterance_id]
        assert mine[-1] is f


def _noise_cases() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    n = 30 * SAMPLE_RATE_HZ
    t = np.arange(n) / SAMPLE_RATE_HZ
    white = rng.normal(0, 0.1, n)
    pink = np.cumsum(rng.normal(0, 0.02, n))
    pink = 0.2 * (pink - np.convolve(pink, np.ones(400) / 400, mode="same"))
    hum = 0.2 * np.sin(2 * np.pi * 50 * t) + 0.05 * np.sin(2 * np.pi * 150 * t)
    return {
        "digital_silence": np.zeros(n),
        "room_tone": rng.normal(0, 0.002, n),
        "white_noise": white,
        "pink_noise": pink,
        "mains_hum": hum,
    }


@pytest.mark.parametrize("case", list(_noise_cases()))
def test_no_captions_from_silence_or_noise(
    base: WhisperRecognizer, vad: SileroVad, case: str
) -> None:
    audio = _noise_cases()[case].astype(np.float32)
    captions = stream_captions(base, vad, audio, partials=True)
    assert [c.text for c in captions if c.text] == []


def test_speech_after_long_silence(base: WhisperRecognizer, vad: SileroVad, eval_dir: Path) -> None:
    speech, reference = load(eval_dir, "en_librispeech_1272-128104-0000")
    audio = np.concatenate([np.zeros(20 * SAMPLE_RATE_HZ, dtype=np.float32), speech])
    captions = stream_captions(base, vad, audio)
    finals = [c for c in captions if c.is_final and c.text]
    assert wer(reference, final_text(captions)) <= 0.10
    assert finals[0].start_ms >= 19_500
