"""A debugging record of what one track's pipeline received: its audio and when it came.

With ``AUDIO_DUMP_DIR`` set, each transcribed track writes two files there:

* ``<name>.wav``: the 16 kHz mono audio exactly as the segmenter saw it (16-bit PCM);
* ``<name>.jsonl``: one line per frame, ``{"t": <monotonic s>, "samples": <count so far>}``
  (the frame timing: late or bunched frames show here), and one per final caption,
  ``{"final": <utterance id>, "start_ms", "end_ms", "words"}`` (the segment boundaries; the word
  count, never the text).

Replaying the WAV through the segmenter reproduces the run's segmentation exactly (the VAD is
deterministic), so a failing live run becomes an offline case. Off by default: it writes
meeting audio to disk.
"""

from __future__ import annotations

import json
import re
import time
import wave
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np

from bot.pipeline.track import AudioSource, CaptionSink
from bot.pipeline.types import SAMPLE_RATE_HZ, SpokenCaption
from bot.pipeline.vad import Float32Array


class TrackDump:
    """The two files of one track; closed when the track's audio ends."""

    def __init__(self, folder: Path, name: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        stem = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
        self.wav_path = folder / f"{stem}.wav"
        self.events_path = folder / f"{stem}.jsonl"
        self._wav = wave.open(str(self.wav_path), "wb")  # noqa: SIM115 - closed in close()
        self._wav.setnchannels(1)
        self._wav.setsampwidth(2)
        self._wav.setframerate(SAMPLE_RATE_HZ)
        self.events_path.write_text("", encoding="utf-8")
        self._samples = 0
        self._closed = False

    def audio(self, samples: Float32Array) -> None:
        if self._closed:
            return
        # The SDK's int16 samples come back exactly (they were divided by 32768).
        pcm = np.clip(np.round(samples * 32768.0), -32768, 32767).astype("<i2")
        self._wav.writeframes(pcm.tobytes())
        self._samples += len(samples)
        self._write({"t": round(time.monotonic(), 4), "samples": self._samples})

    def final(self, item: SpokenCaption) -> None:
        """Noted also after the audio ended: the last final comes after it."""
        c = item.caption
        if not c.is_final:
            return
        self._write(
            {
                "final": c.utterance_id,
                "start_ms": c.start_ms,
                "end_ms": c.end_ms,
                "words": c.word_count,
            }
        )

    def close(self) -> None:
        """The audio ended (the WAV is complete)."""
        if not self._closed:
            self._closed = True
            self._wav.close()

    def _write(self, record: dict[str, object]) -> None:
        with self.events_path.open("a", encoding="utf-8") as events:
            events.write(json.dumps(record) + "\n")


class DumpedSource:
    """An ``AudioSource`` that records what passes through it in a ``TrackDump``."""

    def __init__(self, source: AudioSource, dump: TrackDump) -> None:
        self._source = source
        self._dump = dump

    async def frames(self) -> AsyncIterator[Float32Array]:
        try:
            async for samples in self._source.frames():
                self._dump.audio(samples)
                yield samples
        finally:
            self._dump.close()

    async def aclose(self) -> None:
        await self._source.aclose()


class DumpedSink:
    """A ``CaptionSink`` that notes the finals' boundaries in a ``TrackDump``, then passes on."""

    def __init__(self, sink: CaptionSink, dump: TrackDump) -> None:
        self._sink = sink
        self._dump = dump

    async def publish(self, item: SpokenCaption) -> None:
        self._dump.final(item)
        await self._sink.publish(item)
