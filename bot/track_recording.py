"""The audio of a diarized track, kept on disk while the meeting runs for the after-meeting pass.

``records_audio`` decides which tracks are recorded: those whose diarization is not ``off``.
``TrackRecordings.source`` wraps a track's ``AudioSource``: frames pass through unchanged and
are appended to ``RECORDINGS_DIR/<session id>/<uuid>.pcm`` as 16 kHz mono int16 little-endian
PCM (no header: any prefix of the file is valid audio). Crash safety: the row
(``store.recordings``) is written before the file exists; every frame is written with
``os.write`` (in the page cache at once, so a killed process loses nothing the kernel has) and
the file is ``fsync``-ed every ``RECORDING_FSYNC_S`` off the event loop (a machine crash loses
at most that much). Folders are 0700 and files 0600: meeting audio is sensitive.

A recording that cannot start (database or disk) or a disk that fails mid-stream never stops
the captions: counted (``transcriber_recordings_total``) and logged without identities.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from bot import metrics
from bot.pipeline.track import AudioSource
from bot.pipeline.types import Speaker, TrackSettings
from bot.pipeline.vad import Float32Array
from core.errors import StorageError
from core.logs import error_fields
from store.records import SessionRecord
from store.stores import Store

logger = logging.getLogger("bot.worker")

SAMPLE_BYTES = 2  # int16


def records_audio(settings: TrackSettings) -> bool:
    """Whether a track's audio is kept for the after-meeting pass: when it is diarized at all.
    (The one place that decides; a participant's own diarization mode goes in here.)"""
    return settings.diarization != "off"


def pcm16(samples: Float32Array) -> bytes:
    """Float samples in [-1, 1] as int16 little-endian bytes (the SDK's int16, exactly)."""
    return np.clip(np.round(samples * 32768.0), -32768, 32767).astype("<i2").tobytes()


def read_pcm16(path: Path) -> np.ndarray[Any, Any]:
    """A recording as float32 samples (a trailing odd byte of a cut write is ignored)."""
    raw = path.read_bytes()
    usable = len(raw) - len(raw) % SAMPLE_BYTES
    return np.frombuffer(raw[:usable], dtype="<i2").astype(np.float32) / 32768.0


class PcmFile:
    """An append-only PCM file, fsync-ed every ``fsync_s`` (off the event loop)."""

    def __init__(self, path: Path, *, fsync_s: float) -> None:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(path.parent, 0o700)  # mkdir's mode is masked by the umask
        self.path = path
        self.bytes = 0
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        os.fchmod(self._fd, 0o600)
        self._fsync_s = fsync_s
        self._synced_at = time.monotonic()

    async def write(self, samples: Float32Array) -> None:
        data = pcm16(samples)
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        self.bytes += len(data)
        if time.monotonic() - self._synced_at >= self._fsync_s:
            self._synced_at = time.monotonic()
            await asyncio.to_thread(os.fsync, self._fd)

    async def close(self) -> None:
        fd, self._fd = self._fd, -1
        if fd < 0:
            return
        try:
            await asyncio.to_thread(os.fsync, fd)
        finally:
            os.close(fd)


class TrackRecordings:
    """Where and how a worker keeps tracks' audio (see the module docstring)."""

    def __init__(self, repo: Store, folder: Path, *, worker_id: str, fsync_s: float = 2.0) -> None:
        self._repo = repo
        self.folder = folder
        self._worker_id = worker_id
        self._fsync_s = fsync_s

    def source(self, audio: AudioSource, speaker: Speaker, session: SessionRecord) -> AudioSource:
        """``audio`` recorded from its first frame; ``offset_ms`` on the session timeline
        follows the caption recorder's clock (``bot.recording.CaptionRecorder``)."""
        origin = session.started_at or datetime.now(UTC)
        offset_ms = max(0, round((datetime.now(UTC) - origin).total_seconds() * 1000))
        return RecordedSource(audio, self, speaker, session.id, offset_ms)

    async def open(
        self, speaker: Speaker, session_id: int, offset_ms: int
    ) -> tuple[int, PcmFile] | None:
        path = (self.folder / str(session_id) / f"{uuid.uuid4().hex}.pcm").resolve()
        try:
            recording_id = await self._repo.recordings.start(
                session_id=session_id,
                participant_identity=speaker.identity,
                track_sid=speaker.track_sid,
                worker_id=self._worker_id,
                path=str(path),
                offset_ms=offset_ms,
            )
        except StorageError as exc:
            metrics.RECORDINGS.labels("not_started").inc()
            logger.warning(
                "track recording not started",
                extra={"track_sid": speaker.track_sid, **error_fields(exc)},
            )
            return None
        try:
            return recording_id, PcmFile(path, fsync_s=self._fsync_s)
        except OSError as exc:
            metrics.RECORDINGS.labels("not_started").inc()
            logger.warning(
                "track recording not started",
                extra={"track_sid": speaker.track_sid, **error_fields(exc)},
            )
            with contextlib.suppress(StorageError):
                await self._repo.recordings.remove([recording_id])
            return None

    async def ended(self, recording_id: int, file: PcmFile) -> None:
        await file.close()
        try:
            await self._repo.recordings.stream_ended(recording_id, file.bytes)
        except StorageError as exc:
            # the row stays 'recording': the pass takes it once the session's job has stopped
            logger.warning("track recording end not stored", extra=error_fields(exc))


class RecordedSource:
    """An ``AudioSource`` whose frames are also appended to a kept recording."""

    def __init__(
        self,
        source: AudioSource,
        recordings: TrackRecordings,
        speaker: Speaker,
        session_id: int,
        offset_ms: int,
    ) -> None:
        self._source = source
        self._recordings = recordings
        self._speaker = speaker
        self._session_id = session_id
        self._offset_ms = offset_ms

    async def frames(self) -> AsyncIterator[Float32Array]:
        opened = await self._recordings.open(self._speaker, self._session_id, self._offset_ms)
        if opened is None:
            async for samples in self._source.frames():
                yield samples
            return
        metrics.RECORDINGS.labels("started").inc()
        recording_id, file = opened
        writing = True
        try:
            async for samples in self._source.frames():
                if writing:
                    try:
                        await file.write(samples)
                    except OSError as exc:  # a full disk: the recording stops, captions go on
                        writing = False
                        metrics.RECORDINGS.labels("write_failed").inc()
                        logger.warning(
                            "track recording write failed",
                            extra={"track_sid": self._speaker.track_sid, **error_fields(exc)},
                        )
                yield samples
        finally:
            # shielded: a cancelled pipeline still closes and marks its recording
            await asyncio.shield(self._recordings.ended(recording_id, file))

    async def aclose(self) -> None:
        await self._source.aclose()
