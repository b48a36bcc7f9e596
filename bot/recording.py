"""What a room's transcription writes: participants, finals (through the spool) and usage.

``CaptionRecorder`` is the persistence ``CaptionSink``: finals go to the spool (a local
write-ahead file that reaches Postgres when it can). ``SessionRecorder`` records participants,
admits tracks (opening a usage row checks the limits and quota) and writes the usage meter's
increments as ``UsageCheckpoint``s.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from bot import metrics
from bot.config import BotSettings
from bot.pipeline.types import Speaker, SpokenCaption
from bot.pipeline.usage import UsageMeter
from bot.spool import FinalSpool
from core.errors import LimitExceeded, StorageError
from store.records import (
    FinalSegment,
    SessionRecord,
    UsageCheckpoint,
    WordTiming,
)
from store.stores import Store

logger = logging.getLogger("bot.worker")


class CaptionRecorder:
    """Counts captions and puts the finals of one session in the spool."""

    def __init__(self, spool: FinalSpool, session: SessionRecord, model: str) -> None:
        self._spool = spool
        self._session = session
        self._model = model
        # Caption times become offsets on the session's timeline.
        self._origin = session.started_at or datetime.now(UTC)

    async def publish(self, item: SpokenCaption) -> None:
        c = item.caption
        metrics.CAPTIONS.labels(kind="final" if c.is_final else "partial").inc()
        if not c.is_final or not c.text.strip():
            return
        speech_end_ms = c.words[-1].end_ms if c.words else c.end_ms
        spoken_at = item.stream_started_at + timedelta(milliseconds=speech_end_ms)
        metrics.CAPTION_LATENCY.observe(max(0.0, (datetime.now(UTC) - spoken_at).total_seconds()))
        offset_ms = round((item.stream_started_at - self._origin).total_seconds() * 1000)
        self._spool.put(
            FinalSegment(
                session_id=self._session.id,
                utterance_id=c.utterance_id,
                track_sid=item.speaker.track_sid,
                text=c.text,
                start_ms=max(0, offset_ms + c.start_ms),
                end_ms=max(0, offset_ms + c.end_ms),
                participant_identity=item.speaker.identity,
                speaker_label=item.speaker.label,
                speaker=item.speaker.in_track,
                language=c.language or None,
                started_at=item.stream_started_at + timedelta(milliseconds=c.start_ms),
                ended_at=item.stream_started_at + timedelta(milliseconds=c.end_ms),
                words=tuple(
                    WordTiming(w.text, offset_ms + w.start_ms, offset_ms + w.end_ms, w.probability)
                    for w in c.words
                ),
                confidence=c.confidence,
                model=item.model or self._model,
            )
        )


class SessionRecorder:
    """Participants, track admission and usage checkpoints of one session."""

    def __init__(
        self,
        repo: Store,
        session: SessionRecord,
        settings: BotSettings,
        model: str,
        meter: UsageMeter,
    ) -> None:
        self._repo = repo
        self._session = session
        self._settings = settings
        self._model = model
        self._meter = meter
        self._unopened: dict[str, tuple[Speaker, str]] = {}
        self._limits = settings.transcription_limits()

    async def current_session(self) -> SessionRecord:
        """The session as stored now (its speech settings may have changed since the room
        started); the last one read while the database is unreachable."""
        try:
            found = await self._repo.sessions.get_session_by_id(self._session.id)
        except StorageError:
            logger.warning("session settings not read", extra={"session_id": self._session.id})
            return self._session
        if found is not None:
            self._session = found
        return self._session

    async def participant_joined(self, identity: str, name: str) -> None:
        try:
            await self._repo.sessions.participant_joined(
                self._session.id, identity, name=name or None
            )
        except StorageError:
            logger.warning("participant join not recorded", extra={"session_id": self._session.id})

    async def participant_left(self, identity: str) -> None:
        try:
            await self._repo.sessions.participant_left(self._session.id, identity)
        except StorageError:
            logger.warning("participant leave not recorded", extra={"session_id": self._session.id})

    async def admit(self, speaker: Speaker, model: str | None = None) -> bool:
        """Whether the track may be transcribed (limits and quota); opens its usage row (billed
        for ``model``, default: the room's)."""
        model = model or self._model
        try:
            await self._open(speaker, model)
        except LimitExceeded:
            metrics.TRACKS_REFUSED.inc()
            return False
        except StorageError:
            # The database is down: transcribe anyway, open the usage row when it is back.
            self._unopened[speaker.track_sid] = (speaker, model)
        return True

    async def _open(self, speaker: Speaker, model: str) -> None:
        await self._repo.sessions.participant_joined(
            self._session.id, speaker.identity, name=speaker.name or None
        )
        await self._repo.usage.open_track_usage(
            session_id=self._session.id,
            participant_identity=speaker.identity,
            track_sid=speaker.track_sid,
            model=model,
            cost_per_minute=self._settings.transcription_cost_per_minute,
            currency=self._settings.transcription_currency,
            limits=self._limits,
        )
        self._unopened.pop(speaker.track_sid, None)

    async def checkpoint(self) -> None:
        """Write the usage increments since the last successful checkpoint."""
        for speaker, model in list(self._unopened.values()):
            try:
                await self._open(speaker, model)
            except LimitExceeded:
                self._unopened.pop(speaker.track_sid, None)  # already transcribed: bill it anyway
            except StorageError:
                return
        deltas = self._meter.due()
        if not deltas:
            return
        checkpoints = [
            UsageCheckpoint(
                session_id=self._session.id,
                track_sid=d.track_sid,
                audio_seconds=Decimal(f"{d.audio_s:.3f}"),
                speech_seconds=Decimal(f"{d.speech_s:.3f}"),
                partial_count=d.partials,
                final_count=d.finals,
                error_count=d.errors,
                ended=d.ended,
            )
            for d in deltas
        ]
        try:
            await self._repo.usage.checkpoint_usage(checkpoints)
        except StorageError:
            metrics.DB_WRITE_FAILURES.labels(kind="usage").inc()
            logger.warning("usage checkpoint failed; retried next time")
            return
        self._meter.confirm(deltas)
