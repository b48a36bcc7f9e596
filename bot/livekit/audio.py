"""A subscribed LiveKit track as an ``AudioSource``: 16 kHz mono float32 frames."""

from __future__ import annotations

from collections.abc import AsyncIterator

import numpy as np
from livekit import rtc

from bot.pipeline.types import SAMPLE_RATE_HZ
from bot.pipeline.vad import Float32Array


class LiveKitAudioSource:
    """Frames of ``frame_ms`` from the SDK's ``AudioStream``, which holds at most ``queue_s`` of
    audio and drops the oldest beyond that (the bound of a track whose pipeline falls behind).

    The stream is opened at construction, so audio buffers from the moment the track is taken.
    """

    def __init__(self, track: rtc.RemoteAudioTrack, *, frame_ms: int, queue_s: float) -> None:
        self._audio = rtc.AudioStream.from_track(
            track=track,
            sample_rate=SAMPLE_RATE_HZ,
            num_channels=1,
            capacity=max(1, round(queue_s * 1000 / frame_ms)),
            frame_size_ms=frame_ms,
        )

    async def frames(self) -> AsyncIterator[Float32Array]:
        async for event in self._audio:
            pcm = np.frombuffer(event.frame.data, dtype=np.int16)
            yield pcm.astype(np.float32) / 32768.0

    async def aclose(self) -> None:
        await self._audio.aclose()
