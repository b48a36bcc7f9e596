"""A consumer that stops reading holds the stream up; no final is dropped, nothing grows."""

from __future__ import annotations

import asyncio

import numpy as np

from bot.pipeline.engine import SpeechEngine, StreamOptions
from bot.pipeline.vad import SegmenterOptions
from tests.unit.engine.fakes import AmplitudeVad, ScriptedRecognizer, silence, tone


class _Vad:
    def stream(self) -> AmplitudeVad:
        return AmplitudeVad()


async def test_finals_back_up_into_push_audio_and_all_arrive_once_read() -> None:
    options = StreamOptions(
        segmenter=SegmenterOptions(min_silence_ms=400),
        emit_partials=False,
        caption_queue_size=1,
        pending_queue_size=2,
    )
    engine = SpeechEngine(ScriptedRecognizer(), _Vad(), stream_options=options)  # type: ignore[arg-type]
    stream = engine.open_stream("t")
    utterances = 8
    audio = np.concatenate([np.concatenate([tone(0.6), silence(0.8)]) for _ in range(utterances)])

    async def feed() -> None:
        for i in range(0, len(audio), 1600):
            await stream.push_audio(audio[i : i + 1600])
        await stream.end_input()

    feeding = asyncio.create_task(feed())
    await asyncio.sleep(1.0)  # nobody reads the captions meanwhile
    assert not feeding.done(), "a consumer that does not read holds push_audio up"
    finals = [c async for c in stream.captions() if c.is_final]
    await asyncio.wait_for(feeding, 5)
    await engine.aclose()
    assert len(finals) == utterances
    assert len({c.utterance_id for c in finals}) == utterances
