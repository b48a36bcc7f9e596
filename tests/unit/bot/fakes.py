"""Fakes of the pipeline's Protocols, for the bot's unit tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import numpy as np

from bot.pipeline.engine import SpeechEngine, StreamOptions
from bot.pipeline.types import Speaker, SpokenCaption
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
