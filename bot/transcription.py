"""A room's transcription: what the bot does with each track the room hands it.

``RoomTranscription`` is the room's ``RoomListener``. For each track it starts metering, reads
its session's speech settings as they are now (language, vocabulary, model, diarization: a
change made while a track runs applies to the tracks that start afterwards; a participant's
``transcriber.diarization`` attribute overrides the session's diarization mode), asks the recorder
whether the track may be transcribed (limits, quota), and runs a ``TrackPipeline`` from the
room's audio source to two sinks: the caption recorder (persistence) and the room (publishing).
A diarized track's audio is also kept for the after-meeting pass (``bot.track_recording``).
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
from pathlib import Path

from bot.engines import SpeechEngines
from bot.pipeline.dump import DumpedSink, DumpedSource, TrackDump
from bot.pipeline.engine import SpeechEngine, StreamOptions
from bot.pipeline.track import AudioSource, CaptionSink, TrackPipeline
from bot.pipeline.track_diarization import LiveDiarization, diarization_mode
from bot.pipeline.types import Speaker, TrackSettings
from bot.pipeline.usage import UsageMeter
from bot.recording import SessionRecorder
from bot.track_recording import TrackRecordings, records_audio
from core.speech import whisper_language
from store.records import SessionRecord

logger = logging.getLogger("bot.worker")


class RoomTranscription:
    def __init__(
        self,
        engine: SpeechEngine | SpeechEngines,
        recorder: SessionRecorder,
        captions: CaptionSink,
        meter: UsageMeter,
        *,
        dump_dir: Path | None = None,
        recordings: TrackRecordings | None = None,
        diarization: LiveDiarization | None = None,
    ) -> None:
        self._engines = engine if isinstance(engine, SpeechEngines) else SpeechEngines(engine)
        self._recorder = recorder
        self._captions = captions
        self._meter = meter
        self._stream_ids = itertools.count(1)
        self._dump_dir = dump_dir
        self._recordings = recordings
        # the worker's live diarization (shared models, one executor); None: never diarize
        self._diarization = diarization

    async def participant_joined(self, identity: str, name: str) -> None:
        await self._recorder.participant_joined(identity, name)

    async def participant_left(self, identity: str) -> None:
        await self._recorder.participant_left(identity)

    async def transcribe(self, speaker: Speaker, audio: AudioSource, room: CaptionSink) -> None:
        sid = speaker.track_sid
        self._meter.start(sid)
        try:
            session = await self._recorder.current_session()
            engine = await self._engines.get(session.asr_model)
            settings = track_settings(session, engine, speaker.diarization)
            if not await self._recorder.admit(speaker, settings.model):
                logger.info("track not transcribed: limit reached", extra={"track_sid": sid})
                await audio.aclose()
                return
            logger.info(
                "track settings",
                extra={
                    "track_sid": sid,
                    "model": settings.model,
                    "language": settings.language or "auto",
                    "diarization": settings.diarization,
                },
            )
            options = stream_options(engine.stream_options, settings)
            stream_id = next(self._stream_ids)
            record = self._captions
            if self._dump_dir is not None:
                dump = TrackDump(self._dump_dir, f"{speaker.identity}-{sid}-{stream_id}")
                audio, record = DumpedSource(audio, dump), DumpedSink(record, dump)
            if self._recordings is not None and records_audio(settings):
                audio = self._recordings.source(audio, speaker, session)
            diarizer = None
            wait_s = 0.0
            if self._diarization is not None:
                diarizer = self._diarization.open_track(settings.diarization, sid)
                wait_s = self._diarization.options.max_wait_ms / 1000
            pipeline = TrackPipeline(
                speaker,
                audio,
                engine.open_stream(f"{speaker.identity}/{sid}", options=options),
                record=record,
                publish=room,
                meter=self._meter,
                stream_id=stream_id,
                settings=settings,
                diarizer=diarizer,
                diarization_wait_s=wait_s,
            )
            await pipeline.run()
        finally:
            self._meter.stop(sid)


def track_settings(
    session: SessionRecord, engine: SpeechEngine, participant_diarization: str | None = None
) -> TrackSettings:
    """A track's speech settings from its session's, on the engine that will decode it; the
    participant's own diarization mode (its attribute) wins over the session's."""
    try:
        language = whisper_language(session.language)
    except ValueError:  # stored before validation existed: detect instead
        language = None
    if not engine.recognizer.multilingual and language != "en":
        language = None  # an English-only model has no other language to force
    return TrackSettings(
        model=engine.recognizer.model_name,
        language=language,
        hotwords=session.hotwords or None,
        initial_prompt=session.initial_prompt or None,
        diarization=diarization_mode(session.diarization.value, participant_diarization),
    )


def stream_options(base: StreamOptions, settings: TrackSettings) -> StreamOptions:
    return dataclasses.replace(
        base,
        language=settings.language,
        hotwords=settings.hotwords,
        initial_prompt=settings.initial_prompt,
    )
