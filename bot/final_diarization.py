"""After the meeting: the full offline diarization relabels the stored segments of each kept
track recording, and kept audio is deleted when its time is up.

``FinalDiarization.run_pending`` claims recordings whose session's transcription is over
(``store.recordings``: ``FOR UPDATE SKIP LOCKED``, so several workers share the queue and a
recording a dead worker left is taken by the next) and, one at a time per worker, on one thread
off the event loop:

1. reads the track's PCM and runs the diarizer (pyannote's full pipeline,
   ``OfflineDiarizer``: ~0.25 CPU s per audio second) -> turns on the track's own clock;
2. maps the turns onto the live labels (``align_labels``: each final speaker takes the live
   label it shares the most speech with, so "Speaker 2" on screen stays Speaker 2) and gives each
   stored segment the final speaker it overlaps most (``speaker_at``, the recording's
   ``offset_ms`` turning session times into track times);
3. stores the labels; the session's transcript becomes ``final`` once none of its recordings is
   pending and one was diarized.

The files are on the disk of the worker that recorded them: a worker claiming a recording whose
file it does not have gives it back and skips it (a shared ``RECORDINGS_DIR`` volume lets any
worker take any). A recording whose machine is gone for good stays ``ready`` (its session's
transcript stays live) until the session is deleted.

A recording too short or silent to diarize, an unreadable file or a diarizer failure keeps the
live labels: counted (``transcriber_final_diarizations_total``), logged without text or
identities. A track the live pass never labelled and in which the offline pass hears one voice
stays unlabelled (a single speaker is never split into "Speaker 1").

The audio is deleted after the pass unless the space keeps recordings (``recording_days``);
``sweep`` deletes expired recordings (file, then row) and files whose row is gone (a deleted
session). Runs in the worker (``Worker``), at start, every ``FINAL_DIARIZATION_POLL_S`` and
when a room is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

from bot import metrics
from bot.pipeline.diarize import SpeakerTurn, align_labels, speaker_at
from bot.pipeline.types import SAMPLE_RATE_HZ
from bot.track_recording import read_pcm16
from core.errors import StorageError
from core.logs import error_fields
from store.recordings import RecordingRecord, RecordingSegment
from store.stores import Store

__all__ = ["Diarizer", "FinalDiarization", "final_labels"]

logger = logging.getLogger("bot.worker")


class Diarizer(Protocol):
    """Who spoke when in a whole recording (``OfflineDiarizer``); [] when it cannot tell."""

    def diarize(self, samples: Any) -> list[SpeakerTurn]: ...


def final_labels(
    segments: Sequence[RecordingSegment], turns: Sequence[SpeakerTurn], offset_ms: int
) -> dict[int, str | None]:
    """Each segment's after-meeting label (by id): ``turns`` (track clock) mapped onto the
    segments' live labels, the label of the turn the segment overlaps most."""
    live = [
        SpeakerTurn(s.start_ms - offset_ms, s.end_ms - offset_ms, s.speaker)
        for s in segments
        if s.speaker is not None
    ]
    if not live and len({t.speaker for t in turns}) < 2:
        return {s.id: None for s in segments}  # one voice, never labelled: stays unlabelled
    aligned = align_labels(live, turns)
    return {
        s.id: speaker_at(s.start_ms - offset_ms, s.end_ms - offset_ms, aligned) for s in segments
    }


class FinalDiarization:
    """The after-meeting pass and the recordings' retention on one worker."""

    def __init__(
        self,
        repo: Store,
        folder: Path,
        diarizer: Callable[[], Diarizer],
        *,
        stale_s: float = 3600.0,
    ) -> None:
        self._repo = repo
        self.folder = folder
        self._make_diarizer = diarizer
        self._diarizer: Diarizer | None = None
        self._stale_s = stale_s
        # one pass at a time per worker: the models are large and the pass is CPU-bound
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="final-diarization")
        self._lock = asyncio.Lock()
        # recordings whose file is not on this machine's disk (bounded by the recordings made)
        self._elsewhere: set[int] = set()

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def run_pending(self) -> int:
        """Diarize every recording the worker can claim now; how many were processed."""
        done = 0
        async with self._lock:
            while recording := await self._repo.recordings.claim(
                stale_s=self._stale_s, exclude=self._elsewhere
            ):
                if not await asyncio.to_thread(Path(recording.path).is_file):
                    # written on another machine: its worker will take it
                    self._elsewhere.add(recording.id)
                    await self._repo.recordings.give_back(recording)
                    continue
                await self._process(recording)
                done += 1
        return done

    def _diarize(self, path: Path) -> tuple[list[SpeakerTurn], int]:
        """In the pass's thread: the recording's turns and its length in ms."""
        samples = read_pcm16(path)
        if self._diarizer is None:
            self._diarizer = self._make_diarizer()  # loaded once, on first use
        return self._diarizer.diarize(samples), len(samples) * 1000 // SAMPLE_RATE_HZ

    async def _process(self, recording: RecordingRecord) -> None:
        path = Path(recording.path)
        loop = asyncio.get_running_loop()
        fields = {"recording_id": recording.id, "session_id": recording.session_id}
        try:
            turns, duration_ms = await loop.run_in_executor(self._executor, self._diarize, path)
        except Exception as exc:  # unreadable audio, a diarizer failure: live labels kept
            metrics.FINAL_DIARIZATIONS.labels("failed").inc()
            logger.warning(
                "after-meeting diarization failed", extra={**fields, **error_fields(exc)}
            )
            await self._repo.recordings.fail(recording)
            await self._after(recording)
            return
        if not turns:
            metrics.FINAL_DIARIZATIONS.labels("too_short").inc()
            logger.info("recording too short or silent to diarize", extra=fields)
            await self._repo.recordings.fail(recording)
            await self._after(recording)
            return
        segments = await self._repo.recordings.segments(recording, duration_ms=duration_ms)
        labels = final_labels(segments, turns, recording.offset_ms)
        final = await self._repo.recordings.finish(recording, labels)
        metrics.FINAL_DIARIZATIONS.labels("diarized").inc()
        logger.info(
            "after-meeting diarization done",
            extra={
                **fields,
                "segments": len(segments),
                "speakers": len({t.speaker for t in turns}),
                "transcript_final": final,
            },
        )
        await self._after(recording)

    async def _after(self, recording: RecordingRecord) -> None:
        """The audio goes unless the space keeps recordings (the sweeper deletes it later)."""
        if await self._repo.recordings.keeps_audio(recording.session_id):
            return
        _unlink(Path(recording.path))
        metrics.RECORDINGS_DELETED.labels("done").inc()
        await self._repo.recordings.audio_deleted(recording.id)

    async def sweep(self) -> int:
        """Delete expired recordings (file, then row) and files without a row; how many files."""
        deleted = 0
        while expired := await self._repo.recordings.expired():
            for recording in expired:
                _unlink(Path(recording.path))
                metrics.RECORDINGS_DELETED.labels("expired").inc()
                deleted += 1
            await self._repo.recordings.remove([r.id for r in expired])
        # listed before the query: a row is written before its file, so a listed file whose
        # row is not found had one that is gone (its session deleted)
        files = await asyncio.to_thread(self._files)
        for start in range(0, len(files), 500):
            chunk = files[start : start + 500]
            known = await self._repo.recordings.known_paths(chunk)
            for name in chunk:
                if name not in known:
                    _unlink(Path(name))
                    metrics.RECORDINGS_DELETED.labels("orphan").inc()
                    deleted += 1
        await asyncio.to_thread(self._prune)
        return deleted

    def _files(self) -> list[str]:
        return [str(p.resolve()) for p in self.folder.glob("*/*.pcm")]

    def _prune(self) -> None:
        """Remove the sessions' folders left empty."""
        for folder in self.folder.glob("*"):
            with contextlib.suppress(OSError):
                folder.rmdir()  # only when empty

    async def run(self, stop: asyncio.Event, wake: asyncio.Event, poll_s: float) -> None:
        """The worker's loop: pass and sweep now, then on ``wake`` or every ``poll_s``."""
        while not stop.is_set():
            wake.clear()
            try:
                await self.run_pending()
                await self.sweep()
            except StorageError as exc:
                logger.warning("after-meeting pass postponed", extra=error_fields(exc))
            except Exception as exc:  # the loop outlives any one failure (a full disk, say)
                logger.error("after-meeting pass failed", extra=error_fields(exc))
            waiters = {asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wake.wait())}
            try:
                await asyncio.wait(waiters, timeout=poll_s, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waiters:
                    waiter.cancel()


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
