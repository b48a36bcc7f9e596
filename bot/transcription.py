"""A room's transcription: what the bot does with each track the room hands it.

``RoomTranscription`` is the room's ``RoomListener``. For each track it starts metering, asks
the recorder whether the track may be transcribed (limits, quota), and runs a
``TrackPipeline`` from the room's audio source to two sinks: the caption recorder
(persistence) and the room (publishing).
"""

from __future__ import annotations

import itertools
import logging
from pathlib import Path

from bot.pipeline.dump import DumpedSink, DumpedSource, TrackDump
from bot.pipeline.engine import SpeechEngine
from bot.pipeline.track import AudioSource, CaptionSink, TrackPipeline
from bot.pipeline.types import Speaker
from bot.pipeline.usage import UsageMeter
from bot.recording import SessionRecorder

logger = logging.getLogger("bot.worker")


class RoomTranscription:
    def __init__(
        self,
        engine: SpeechEngine,
        recorder: SessionRecorder,
        captions: CaptionSink,
        meter: UsageMeter,
        *,
        dump_dir: Path | None = None,
    ) -> None:
        self._engine = engine
        self._recorder = recorder
        self._captions = captions
        self._meter = meter
        self._stream_ids = itertools.count(1)
        self._dump_dir = dump_dir

    async def participant_joined(self, identity: str, name: str) -> None:
        await self._recorder.participant_joined(identity, name)

    async def participant_left(self, identity: str) -> None:
        await self._recorder.participant_left(identity)

    async def transcribe(self, speaker: Speaker, audio: AudioSource, room: CaptionSink) -> None:
        sid = speaker.track_sid
        self._meter.start(sid)
        try:
            if not await self._recorder.admit(speaker):
                logger.info("track not transcribed: limit reached", extra={"track_sid": sid})
                await audio.aclose()
                return
            stream_id = next(self._stream_ids)
            record = self._captions
            if self._dump_dir is not None:
                dump = TrackDump(self._dump_dir, f"{speaker.identity}-{sid}-{stream_id}")
                audio, record = DumpedSource(audio, dump), DumpedSink(record, dump)
            pipeline = TrackPipeline(
                speaker,
                audio,
                self._engine.open_stream(f"{speaker.identity}/{sid}"),
                record=record,
                publish=room,
                meter=self._meter,
                stream_id=stream_id,
            )
            await pipeline.run()
        finally:
            self._meter.stop(sid)
