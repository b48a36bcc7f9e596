"""Fakes implementing the engine's seams, for hermetic tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

import numpy as np

from bot.pipeline.asr import DecodeRequest, Hypothesis, RecognizedWord
from bot.pipeline.types import SAMPLE_RATE_HZ
from bot.pipeline.vad import Float32Array
from core.errors import AsrError


class AmplitudeVad:
    """A VadStream whose speech probability is the window's peak amplitude (clipped to 1).

    Synthetic "speech" is a tone at amplitude 0.9, silence is zeros: the segmenter's state
    machine can then be tested on exact, scripted signals.
    """

    def probability(self, window: Float32Array) -> float:
        return float(min(1.0, np.max(np.abs(window))))


def tone(seconds: float, amplitude: float = 0.9) -> Float32Array:
    t = np.arange(int(seconds * SAMPLE_RATE_HZ)) / SAMPLE_RATE_HZ
    return (amplitude * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def silence(seconds: float) -> Float32Array:
    return np.zeros(int(seconds * SAMPLE_RATE_HZ), dtype=np.float32)


class ScriptedRecognizer:
    """Turns each request into text via ``script(request)``; records every batch it decodes."""

    model_name = "fake"
    multilingual = False

    def __init__(
        self,
        script: Callable[[DecodeRequest], str] | None = None,
        *,
        delay_s: float = 0.0,
        gate: threading.Event | None = None,
    ) -> None:
        self.script = script or (lambda r: "hello world")
        self.delay_s = delay_s
        self.gate = gate
        self.batches: list[list[DecodeRequest]] = []
        self.fail_next = False
        self.fail_when: Callable[[DecodeRequest], bool] = lambda r: False

    def decode_batch(self, requests: Sequence[DecodeRequest]) -> list[Hypothesis]:
        if self.gate is not None:
            self.gate.wait(timeout=10)
        if self.delay_s:
            time.sleep(self.delay_s)
        self.batches.append(list(requests))
        if self.fail_next or any(self.fail_when(r) for r in requests):
            self.fail_next = False
            raise AsrError("scripted failure")
        out = []
        for r in requests:
            text = self.script(r)
            words = tuple(
                RecognizedWord(w, i * 0.3, i * 0.3 + 0.25, 0.9) for i, w in enumerate(text.split())
            )
            out.append(
                Hypothesis(
                    text=text,
                    language="en",
                    language_probability=1.0,
                    avg_logprob=-0.2,
                    no_speech_prob=0.01,
                    compression_ratio=1.0,
                    words=words if r.want_words else (),
                    rejected=None if text else "empty",
                )
            )
        return out
