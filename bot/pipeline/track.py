"""One track's pipeline: audio frames in, captions out to the sinks, usage to the meter.

    AudioSource.frames() -> SpeechStream (VAD + streaming ASR) -> captions
        + TrackDiarizer (optional: in-track speakers, off the event loop)
        -> speaker of each caption (a final waits for the diarizer, and splits at a change)
        -> record sink (persistence: awaited first, a final the room has seen must survive)
        -> CaptionOutbox (bounded) -> publish sink (the room: slow links coalesce partials)

``TrackPipeline.run`` owns one task group (feed, emit, publish). The audio source ending (the
track was unsubscribed or muted, the room is being left) finishes the open utterance and drains
the captions; cancelling ``run`` stops at once. A failure of any stage is logged and counted
and ends this track's pipeline only: ``run`` returns, the room and its other tracks go on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Protocol

from bot import metrics
from bot.pipeline.engine import StreamStats
from bot.pipeline.outbox import CaptionOutbox
from bot.pipeline.track_diarization import TrackDiarizer
from bot.pipeline.types import Caption, Speaker, SpokenCaption, TrackSettings
from bot.pipeline.usage import UsageMeter
from bot.pipeline.vad import Float32Array
from core.logs import error_fields

logger = logging.getLogger("bot.pipeline")


class AudioSource(Protocol):
    """One track's audio: 16 kHz mono float32 frames until the track ends or ``aclose``."""

    def frames(self) -> AsyncIterator[Float32Array]: ...

    async def aclose(self) -> None:
        """End the frames (idempotent)."""
        ...


class CaptionSink(Protocol):
    """Where a track's captions go (the room, the transcript store)."""

    async def publish(self, item: SpokenCaption) -> None: ...


class SpeechStream(Protocol):
    """What the pipeline needs of ``StreamTranscriber``."""

    @property
    def stats(self) -> StreamStats: ...

    async def push_audio(self, samples: Float32Array) -> None: ...

    async def end_input(self) -> None: ...

    def captions(self) -> AsyncIterator[Caption]: ...

    async def aclose(self) -> None: ...


class TrackPipeline:
    """Captions for one track, from its audio source to its sinks."""

    def __init__(
        self,
        speaker: Speaker,
        source: AudioSource,
        stream: SpeechStream,
        *,
        record: CaptionSink,
        publish: CaptionSink,
        meter: UsageMeter,
        stream_id: int,
        settings: TrackSettings | None = None,
        diarizer: TrackDiarizer | None = None,
        diarization_wait_s: float = 2.5,
    ) -> None:
        self.speaker = speaker
        # the speech settings the stream was opened with (read by later stages: diarization)
        self.settings = settings
        self._source = source
        self._stream = stream
        self._record = record
        self._publish_sink = publish
        self._meter = meter
        self._stream_id = stream_id
        self._diarizer = diarizer
        self._diarization_wait_s = diarization_wait_s

    async def run(self) -> None:
        """Until the source ends and the captions are out; a failure ends only this track."""
        sid = self.speaker.track_sid
        try:
            async with asyncio.TaskGroup() as tg:
                outbox = CaptionOutbox()
                tg.create_task(self._feed(), name=f"feed:{sid}")
                tg.create_task(self._emit(outbox), name=f"emit:{sid}")
                tg.create_task(self._publish(outbox), name=f"publish:{sid}")
        except* Exception as group:
            metrics.PIPELINE_FAILURES.inc()
            self._stream.stats.errors += 1
            # the types and frames only: a message may quote captions or SQL parameters
            logger.error("track pipeline failed", extra={"track_sid": sid, **error_fields(group)})
        finally:
            await self._stream.aclose()
            with contextlib.suppress(Exception):
                await self._source.aclose()
            self._meter_usage()

    def _meter_usage(self) -> None:
        self._meter.record(self.speaker.track_sid, self._stream_id, self._stream.stats)

    async def _feed(self) -> None:
        diarizer = self._diarizer
        try:
            async for samples in self._source.frames():
                if diarizer is not None:
                    diarizer.push_audio(samples)
                await self._stream.push_audio(samples)
                self._meter_usage()
        finally:
            if diarizer is not None:
                diarizer.end_input()
        await self._stream.end_input()

    async def _emit(self, outbox: CaptionOutbox) -> None:
        started_at = datetime.now(UTC)
        try:
            async for caption in self._stream.captions():
                model = self.settings.model if self.settings is not None else ""
                for piece, speaker in await self._attribute(caption):
                    item = SpokenCaption(piece, speaker, started_at, model)
                    # Persistence first (a local write-ahead append): a final the room has
                    # seen must survive a crash right after publishing.
                    await self._record.publish(item)
                    self._meter_usage()
                    await outbox.put(item)
        finally:
            outbox.close()

    async def _attribute(self, caption: Caption) -> list[tuple[Caption, Speaker]]:
        """Who said the caption: the participant, or on a diarized track the in-track speaker
        (a final waits for the diarizer to cover its end, and splits where the speaker
        changes; a partial takes the latest known speaker)."""
        diarizer = self._diarizer
        if diarizer is None:
            return [(caption, self.speaker)]
        if not caption.is_final:
            return [(caption, self.speaker.within(diarizer.partial_speaker(caption)))]
        await diarizer.wait_covered(caption.end_ms, self._diarization_wait_s)
        return [(piece, self.speaker.within(who)) for piece, who in diarizer.attribute(caption)]

    async def _publish(self, outbox: CaptionOutbox) -> None:
        while (item := await outbox.get()) is not None:
            try:
                await self._publish_sink.publish(item)
            except Exception:  # the room may be going away; the final is stored anyway
                logger.warning(
                    "caption publish failed", extra={"track_sid": self.speaker.track_sid}
                )
