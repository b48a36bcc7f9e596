"""Track recordings: the audio the bot keeps of diarized tracks for the after-meeting pass.

A row is written *before* its file is created (so a file without a row is always garbage the
bot may delete) and walks ``recording -> ready -> diarizing -> diarized | failed``:

* the bot's track stream ends: :meth:`RecordingStore.stream_ended` (``ready``, with its size);
  a worker killed mid-stream leaves ``recording`` and a valid prefix on disk;
* once the session's transcription is over (no job of the session waiting or running), any
  worker claims the oldest pending row with ``FOR UPDATE SKIP LOCKED``
  (:meth:`RecordingStore.claim`): ``ready`` rows, ``recording`` rows a dead worker left, and
  ``diarizing`` rows whose claim is older than ``stale_s`` (a worker died in the pass);
* a worker that claims a row whose file is not on its disk gives it back
  (:meth:`RecordingStore.give_back`) and skips it from then on: the worker of the machine that
  wrote it takes it (or any worker, when ``RECORDINGS_DIR`` is a shared volume);
* :meth:`RecordingStore.finish` writes each segment's ``final_speaker`` and, when no recording
  of the session is pending any more and at least one was diarized, makes the session's
  transcript version ``final``; :meth:`RecordingStore.fail` keeps the live labels.

Retention: a space's ``recording_days`` keeps the audio that long after it was recorded (NULL:
the bot deletes it right after the pass); :meth:`RecordingStore.expired` lists the rows past it
(the bot deletes the file, then :meth:`RecordingStore.remove`). Deleting a session deletes its
rows (``ON DELETE CASCADE``); the bot deletes files whose row is gone (:meth:`known_paths`).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import delete, exists, insert, or_, select, text, update

from store.base import StoreBase, sql_time
from store.enums import JobStatus, RecordingStatus, TranscriptVersion
from store.models import Segment, Session, SpaceRetention, TrackRecording, TranscriptionJob

__all__ = ["RecordingRecord", "RecordingSegment", "RecordingStore"]

PENDING: Final = (RecordingStatus.RECORDING, RecordingStatus.READY, RecordingStatus.DIARIZING)
DONE: Final = (RecordingStatus.DIARIZED, RecordingStatus.FAILED)


@dataclass(frozen=True, slots=True)
class RecordingRecord:
    id: int
    session_id: int
    participant_identity: str
    track_sid: str
    path: str
    offset_ms: int
    status: RecordingStatus
    bytes: int


@dataclass(frozen=True, slots=True)
class RecordingSegment:
    """A stored segment of a recorded track: id, times on the session timeline, live label."""

    id: int
    start_ms: int
    end_ms: int
    speaker: str | None


_COLUMNS: Final = (
    TrackRecording.id,
    TrackRecording.session_id,
    TrackRecording.participant_identity,
    TrackRecording.track_sid,
    TrackRecording.path,
    TrackRecording.offset_ms,
    TrackRecording.status,
    TrackRecording.bytes,
)


def _record(row: Any) -> RecordingRecord:
    return RecordingRecord(
        id=row.id,
        session_id=row.session_id,
        participant_identity=row.participant_identity,
        track_sid=row.track_sid,
        path=row.path,
        offset_ms=row.offset_ms,
        status=RecordingStatus(row.status),
        bytes=row.bytes,
    )


class RecordingStore(StoreBase):
    """Rows of kept track audio and the after-meeting pass's queue (module docstring)."""

    async def start(
        self,
        *,
        session_id: int,
        participant_identity: str,
        track_sid: str,
        worker_id: str,
        path: str,
        offset_ms: int,
    ) -> int:
        """Register a recording about to be written (before its file exists); its id."""
        async with self._tx() as s:
            return int(
                (
                    await s.execute(
                        insert(TrackRecording)
                        .values(
                            session_id=session_id,
                            participant_identity=participant_identity,
                            track_sid=track_sid,
                            worker_id=worker_id,
                            path=path,
                            offset_ms=offset_ms,
                        )
                        .returning(TrackRecording.id)
                    )
                ).scalar_one()
            )

    async def stream_ended(self, recording_id: int, size_bytes: int) -> None:
        """The track's stream ended with ``size_bytes`` of audio on disk: ready for the pass."""
        async with self._tx() as s:
            await s.execute(
                update(TrackRecording)
                .where(
                    TrackRecording.id == recording_id,
                    TrackRecording.status == RecordingStatus.RECORDING,
                )
                .values(status=RecordingStatus.READY, bytes=size_bytes)
            )

    async def claim(
        self,
        *,
        stale_s: float,
        exclude: Collection[int] = (),
        now: datetime | None = None,
    ) -> RecordingRecord | None:
        """The oldest recording the after-meeting pass may take now, marked ``diarizing``;
        ``exclude``: ids this worker cannot read (their file is on another machine)."""
        ts = sql_time(now)
        transcribing = exists().where(
            TranscriptionJob.session_id == TrackRecording.session_id,
            TranscriptionJob.status != JobStatus.STOPPED,
        )
        candidate = (
            select(TrackRecording.id)
            .where(
                TrackRecording.status.in_(PENDING),
                or_(
                    TrackRecording.status != RecordingStatus.DIARIZING,
                    TrackRecording.claimed_at < ts - timedelta(seconds=stale_s),
                ),
                ~transcribing,
                TrackRecording.id.not_in(sorted(exclude)),
            )
            .order_by(TrackRecording.created_at, TrackRecording.id)
            .limit(1)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        async with self._tx() as s:
            row = (
                await s.execute(
                    update(TrackRecording)
                    .where(TrackRecording.id == candidate)
                    .values(status=RecordingStatus.DIARIZING, claimed_at=ts)
                    .returning(*_COLUMNS)
                )
            ).first()
        return None if row is None else _record(row)

    async def give_back(self, recording: RecordingRecord) -> None:
        """A claimed recording this worker cannot read goes back to ``ready`` for the worker
        that has its file."""
        async with self._tx() as s:
            await s.execute(
                update(TrackRecording)
                .where(
                    TrackRecording.id == recording.id,
                    TrackRecording.status == RecordingStatus.DIARIZING,
                )
                .values(status=RecordingStatus.READY, claimed_at=None)
            )

    async def segments(
        self, recording: RecordingRecord, *, duration_ms: int
    ) -> list[RecordingSegment]:
        """The stored segments of the recorded track stream: the session's segments of its
        track that start within the recording, in timeline order."""
        stmt = (
            select(Segment.id, Segment.start_ms, Segment.end_ms, Segment.speaker)
            .where(
                Segment.session_id == recording.session_id,
                Segment.track_sid == recording.track_sid,
                Segment.start_ms >= recording.offset_ms,
                Segment.start_ms < recording.offset_ms + duration_ms,
            )
            .order_by(Segment.start_ms, Segment.id)
        )
        async with self._read() as conn:
            rows = (await conn.execute(stmt)).all()
        return [RecordingSegment(r.id, r.start_ms, r.end_ms, r.speaker) for r in rows]

    async def finish(
        self,
        recording: RecordingRecord,
        final_speakers: Mapping[int, str | None],
        *,
        now: datetime | None = None,
    ) -> bool:
        """Write the segments' after-meeting labels (by segment id) and mark the recording
        diarized; True when that made the session's transcript ``final``."""
        async with self._tx() as s:
            for label in {*final_speakers.values()}:
                ids = sorted(i for i, v in final_speakers.items() if v == label)
                await s.execute(
                    update(Segment)
                    .where(Segment.session_id == recording.session_id, Segment.id.in_(ids))
                    .values(final_speaker=label)
                )
            return await self._done(s, recording, RecordingStatus.DIARIZED, now)

    async def fail(self, recording: RecordingRecord, *, now: datetime | None = None) -> bool:
        """The pass could not label the recording (too short, silent, the diarizer failed):
        its segments keep their live labels. True when the session still became ``final``
        (another of its recordings was diarized)."""
        async with self._tx() as s:
            return await self._done(s, recording, RecordingStatus.FAILED, now)

    @staticmethod
    async def _done(
        s: Any, recording: RecordingRecord, status: RecordingStatus, now: datetime | None
    ) -> bool:
        ts = sql_time(now)
        await s.execute(
            update(TrackRecording)
            .where(TrackRecording.id == recording.id)
            .values(status=status, finished_at=ts)
        )
        # the session's row lock orders two workers finishing its last two recordings
        await s.execute(
            select(Session.id).where(Session.id == recording.session_id).with_for_update()
        )
        of_session = TrackRecording.session_id == recording.session_id
        result = await s.execute(
            update(Session)
            .where(
                Session.id == recording.session_id,
                ~exists().where(of_session, TrackRecording.status.in_(PENDING)),
                exists().where(of_session, TrackRecording.status == RecordingStatus.DIARIZED),
            )
            .values(transcript_version=TranscriptVersion.FINAL, diarized_at=ts)
            .returning(Session.id)
        )
        return result.first() is not None

    async def keeps_audio(self, session_id: int) -> bool:
        """Whether the session's space keeps recordings after the pass (``recording_days``)."""
        stmt = (
            select(SpaceRetention.recording_days)
            .join(Session, Session.space_id == SpaceRetention.space_id)
            .where(Session.id == session_id)
        )
        async with self._read() as conn:
            days = (await conn.execute(stmt)).scalar_one_or_none()
        return days is not None

    async def audio_deleted(self, recording_id: int, *, now: datetime | None = None) -> None:
        async with self._tx() as s:
            await s.execute(
                update(TrackRecording)
                .where(TrackRecording.id == recording_id)
                .values(audio_deleted_at=sql_time(now))
            )

    async def expired(
        self, *, now: datetime | None = None, limit: int = 100
    ) -> list[RecordingRecord]:
        """Recordings past their space's ``recording_days`` (done with the pass): the bot
        deletes their files, then :meth:`remove` the rows."""
        stmt = (
            select(*_COLUMNS)
            .join(Session, Session.id == TrackRecording.session_id)
            .join(SpaceRetention, SpaceRetention.space_id == Session.space_id)
            .where(
                TrackRecording.status.in_(DONE),
                SpaceRetention.recording_days.is_not(None),
                TrackRecording.created_at
                < sql_time(now) - SpaceRetention.recording_days * text("interval '1 day'"),
            )
            .order_by(TrackRecording.created_at)
            .limit(limit)
        )
        async with self._read() as conn:
            return [_record(r) for r in (await conn.execute(stmt)).all()]

    async def remove(self, recording_ids: Sequence[int]) -> None:
        if not recording_ids:
            return
        async with self._tx() as s:
            await s.execute(delete(TrackRecording).where(TrackRecording.id.in_(recording_ids)))

    async def known_paths(self, paths: Sequence[str]) -> set[str]:
        """Which of ``paths`` still have a row (a file without one is garbage)."""
        if not paths:
            return set()
        stmt = select(TrackRecording.path).where(
            TrackRecording.path.in_(sorted(set(paths))), TrackRecording.audio_deleted_at.is_(None)
        )
        async with self._read() as conn:
            return set((await conn.execute(stmt)).scalars())
