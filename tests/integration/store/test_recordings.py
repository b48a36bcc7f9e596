"""Kept track audio on a real PostgreSQL: the recorder's files, the after-meeting pass's queue
(crash pickup, waiting for the transcription to end, failures keeping live labels) and the
deletion of audio (after the pass, by ``recording_days``, with the session).

The diarizer here is a stand-in that returns fixed turns or fails: what is under test is the
pass around it (the real pipeline on real audio: tests/integration/engine/
test_final_diarization.py)."""

from __future__ import annotations

import stat
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.final_diarization import FinalDiarization, final_labels
from bot.pipeline.diarize import SpeakerTurn
from bot.pipeline.types import Speaker, TrackSettings
from bot.pipeline.vad import Float32Array
from bot.track_recording import PcmFile, TrackRecordings, read_pcm16, records_audio
from core.errors import DiarizationError
from store.enums import RecordingStatus, TranscriptVersion
from store.models import Segment, TrackRecording
from store.recordings import RecordingSegment
from store.records import FinalSegment, SessionRecord
from store.stores import Store

ROOM = Speaker(identity="room", name="Room 4", track_sid="TR_room", label="Room 4")
RATE = 16_000


class Turns:
    """A stand-in diarizer: fixed turns (track clock), or a failure."""

    def __init__(self, turns: Sequence[SpeakerTurn] = (), *, fail: bool = False) -> None:
        self.turns = list(turns)
        self.fail = fail
        self.calls = 0

    def diarize(self, samples: Any) -> list[SpeakerTurn]:
        self.calls += 1
        if self.fail:
            raise DiarizationError("diarization failed: RuntimeError")
        return list(self.turns) if np.any(samples) else []


class Frames:
    def __init__(self, frames: list[Float32Array]) -> None:
        self._frames = frames

    async def frames(self) -> AsyncIterator[Float32Array]:
        for frame in self._frames:
            yield frame

    async def aclose(self) -> None:
        pass


def _count(outcome: str) -> float:
    value = REGISTRY.get_sample_value("transcriber_final_diarizations_total", {"outcome": outcome})
    return value or 0.0


@pytest.fixture
async def session(repo: Store) -> SessionRecord:
    record = await repo.sessions.create_session(space_id="space-a", created_by="ivan")
    await repo.sessions.participant_joined(record.id, "room", name="Room 4")
    # the track started 2 s into the session: its segments' times are 2000 ms ahead of its audio
    await repo.transcripts.upsert_final_segments(
        [
            FinalSegment(
                session_id=record.id,
                utterance_id=f"u{n}",
                track_sid="TR_room",
                text="words",
                start_ms=2_000 + start,
                end_ms=2_000 + start + 900,
                participant_identity="room",
                speaker=live,
            )
            for n, (start, live) in enumerate(
                [(0, "Speaker 1"), (1_000, "Speaker 2"), (2_000, "Speaker 1"), (3_000, "Speaker 1")]
            )
        ]
    )
    return record


async def _record(
    repo: Store, folder: Path, session: SessionRecord, samples: Float32Array, *, end: bool = True
) -> int:
    """A recording of ``samples`` at offset 2000 ms (``end=False``: its worker died)."""
    recordings = TrackRecordings(repo, folder, worker_id="w1", fsync_s=0.01)
    opened = await recordings.open(ROOM, session.id, 2_000)
    assert opened is not None
    recording_id, file = opened
    for start in range(0, len(samples), 1600):
        await file.write(samples[start : start + 1600])
    if end:
        await recordings.ended(recording_id, file)
    return recording_id


def _pcm_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*/*.pcm"))


def _speech(seconds: float) -> Float32Array:
    rng = np.random.default_rng(1)
    return (rng.standard_normal(int(seconds * RATE)) * 0.1).astype(np.float32)


# the offline pass hears segment u2 as the second voice (live had it as Speaker 1)
TURNS = [
    SpeakerTurn(0, 900, "A"),
    SpeakerTurn(1_000, 1_900, "B"),
    SpeakerTurn(2_000, 2_900, "B"),
    SpeakerTurn(3_000, 3_900, "A"),
]


async def _rows(
    sessionmaker: async_sessionmaker[AsyncSession], session_id: int
) -> list[tuple[str | None, str | None]]:
    async with sessionmaker() as s:
        rows = await s.execute(
            select(Segment.speaker, Segment.final_speaker)
            .where(Segment.session_id == session_id)
            .order_by(Segment.start_ms)
        )
        return [(r.speaker, r.final_speaker) for r in rows]


async def test_the_recorder_writes_a_private_pcm_file_and_passes_frames_on(
    repo: Store, session: SessionRecord, tmp_path: Path
) -> None:
    assert not records_audio(TrackSettings(model="m", diarization="off"))
    assert records_audio(TrackSettings(model="m", diarization="auto"))
    frames = [_speech(0.1) for _ in range(5)]
    source = TrackRecordings(repo, tmp_path / "rec", worker_id="w1").source(
        Frames(frames), ROOM, session
    )
    seen = [frame async for frame in source.frames()]
    assert all(np.array_equal(a, b) for a, b in zip(seen, frames, strict=True))
    files = list((tmp_path / "rec").glob("*/*.pcm"))
    assert len(files) == 1
    assert stat.S_IMODE(files[0].stat().st_mode) == 0o600
    assert stat.S_IMODE(files[0].parent.stat().st_mode) == 0o700
    assert np.allclose(read_pcm16(files[0]), np.concatenate(frames), atol=1 / 32768)
    recording = (await repo.recordings.expired(now=datetime.now(UTC) + timedelta(days=9))) or None
    assert recording is None  # no retention policy: nothing "expires", the pass deletes it
    claimed = await repo.recordings.claim(stale_s=60)
    assert claimed is not None
    assert (claimed.status, claimed.bytes, claimed.path) == (
        RecordingStatus.DIARIZING,
        2 * sum(len(f) for f in frames),
        str(files[0]),
    )
    assert (claimed.participant_identity, claimed.track_sid) == ("room", "TR_room")


async def test_a_killed_writer_leaves_a_valid_prefix(tmp_path: Path) -> None:
    samples = _speech(1.0)
    file = PcmFile(tmp_path / "s" / "a.pcm", fsync_s=0.01)
    await file.write(samples[:8000])
    await file.write(samples[8000:])
    # no close(): the process died; what was written is there and readable
    assert np.allclose(read_pcm16(tmp_path / "s" / "a.pcm"), samples, atol=1 / 32768)
    with (tmp_path / "s" / "a.pcm").open("ab") as cut:
        cut.write(b"\x01")  # half a sample from a write cut short
    assert len(read_pcm16(tmp_path / "s" / "a.pcm")) == len(samples)


async def test_a_recording_left_by_a_dead_worker_is_diarized_by_the_next(
    repo: Store,
    session: SessionRecord,
    sessionmaker: async_sessionmaker[AsyncSession],
    tmp_path: Path,
) -> None:
    await _record(repo, tmp_path, session, _speech(4.0), end=False)  # left 'recording'
    # while the session is being transcribed the pass waits
    await repo.jobs.request_transcription(session.id)
    diarizer = Turns(TURNS)
    passes = FinalDiarization(repo, tmp_path, lambda: diarizer)
    try:
        assert await passes.run_pending() == 0
        lease = await repo.jobs.claim_job("w2", lease_for=timedelta(seconds=30))
        assert lease is not None
        await repo.jobs.finish_job(lease, reason="room_empty")
        before = _count("diarized")
        assert await passes.run_pending() == 1
    finally:
        passes.close()
    assert _count("diarized") == before + 1
    # live labels kept; final labels mapped onto them: A -> Speaker 1, B -> Speaker 2
    assert await _rows(sessionmaker, session.id) == [
        ("Speaker 1", "Speaker 1"),
        ("Speaker 2", "Speaker 2"),
        ("Speaker 1", "Speaker 2"),
        ("Speaker 1", "Speaker 1"),
    ]
    after = await repo.sessions.get_session_by_id(session.id)
    assert after is not None
    assert after.transcript_version is TranscriptVersion.FINAL
    assert after.diarized_at is not None
    # no retention policy: the audio is gone, the row says so
    assert _pcm_files(tmp_path) == []
    async with sessionmaker() as s:
        row = (await s.execute(select(TrackRecording))).scalar_one()
    assert (row.status, row.audio_deleted_at is not None) == (RecordingStatus.DIARIZED, True)


async def test_a_stale_claim_is_taken_again(
    repo: Store, session: SessionRecord, tmp_path: Path
) -> None:
    await _record(repo, tmp_path, session, _speech(2.0))
    first = await repo.recordings.claim(stale_s=600)
    assert first is not None
    assert await repo.recordings.claim(stale_s=600) is None  # claimed, alive
    later = datetime.now(UTC) + timedelta(seconds=601)
    again = await repo.recordings.claim(stale_s=600, now=later)
    assert again is not None and again.id == first.id


@pytest.mark.parametrize(
    ("diarizer", "samples", "outcome"),
    [
        (Turns(fail=True), _speech(4.0), "failed"),
        (Turns(TURNS), np.zeros(4 * RATE, dtype=np.float32), "too_short"),  # silence
    ],
)
async def test_a_failed_or_silent_pass_keeps_the_live_labels(
    repo: Store,
    session: SessionRecord,
    sessionmaker: async_sessionmaker[AsyncSession],
    tmp_path: Path,
    diarizer: Turns,
    samples: Float32Array,
    outcome: str,
) -> None:
    await _record(repo, tmp_path, session, samples)
    before = _count(outcome)
    passes = FinalDiarization(repo, tmp_path, lambda: diarizer)
    try:
        assert await passes.run_pending() == 1
    finally:
        passes.close()
    assert _count(outcome) == before + 1
    assert [final for _, final in await _rows(sessionmaker, session.id)] == [None] * 4
    after = await repo.sessions.get_session_by_id(session.id)
    assert after is not None and after.transcript_version is TranscriptVersion.LIVE
    assert _pcm_files(tmp_path) == []


async def test_retention_deletes_expired_recordings_and_those_of_deleted_sessions(
    repo: Store,
    session: SessionRecord,
    sessionmaker: async_sessionmaker[AsyncSession],
    tmp_path: Path,
) -> None:
    await repo.retention.set_policy("space-a", None, recording_days=3)
    old = await _record(repo, tmp_path, session, _speech(2.0))
    new = await _record(repo, tmp_path, session, _speech(2.0))
    passes = FinalDiarization(repo, tmp_path, lambda: Turns(TURNS))
    try:
        assert await passes.run_pending() == 2
        # the space keeps recordings: both files are still there after the pass
        assert len(_pcm_files(tmp_path)) == 2
        async with sessionmaker.begin() as s:
            await s.execute(
                update(TrackRecording)
                .where(TrackRecording.id == old)
                .values(created_at=datetime.now(UTC) - timedelta(days=4))
            )
        assert await passes.sweep() == 1
        async with sessionmaker() as s:
            rows = (await s.execute(select(TrackRecording.id, TrackRecording.path))).all()
        assert [r.id for r in rows] == [new]
        assert [str(p.resolve()) for p in _pcm_files(tmp_path)] == [rows[0].path]

        # deleting the session deletes its rows; the bot then deletes the file
        other = await repo.sessions.create_session(space_id="space-b", created_by="x")
        await repo.sessions.participant_joined(other.id, "room", name="Room 4")
        await _record(repo, tmp_path, other, _speech(1.0))
        assert await repo.sessions.delete_session(session.id)
        assert await passes.sweep() == 1
        left = _pcm_files(tmp_path)
        assert [p.parent.name for p in left] == [str(other.id)]
        assert not (tmp_path / str(session.id)).exists()
    finally:
        passes.close()


def test_final_labels_map_onto_the_live_ones_and_leave_one_voice_unlabelled() -> None:
    segments = [
        RecordingSegment(1, 5_000, 5_900, "Speaker 2"),
        RecordingSegment(2, 6_000, 6_900, "Speaker 1"),
        RecordingSegment(3, 7_000, 7_900, "Speaker 2"),
    ]
    turns = [SpeakerTurn(0, 1_000, "X"), SpeakerTurn(1_000, 3_000, "Y")]
    # offset 5000: X covers segment 1 (live Speaker 2), Y segments 2 and 3 (Speaker 1 and 2):
    # the one-to-one mapping sharing the most speech is X -> Speaker 2, Y -> Speaker 1
    assert final_labels(segments, turns, 5_000) == {1: "Speaker 2", 2: "Speaker 1", 3: "Speaker 1"}
    unlabelled = [RecordingSegment(1, 0, 900, None), RecordingSegment(2, 1_000, 1_900, None)]
    assert final_labels(unlabelled, [SpeakerTurn(0, 2_000, "X")], 0) == {1: None, 2: None}
    two = [SpeakerTurn(0, 950, "X"), SpeakerTurn(950, 2_000, "Y")]
    assert final_labels(unlabelled, two, 0) == {1: "Speaker 1", 2: "Speaker 2"}


async def test_a_recording_on_another_machine_is_left_to_the_worker_that_has_it(
    repo: Store,
    session: SessionRecord,
    sessionmaker: async_sessionmaker[AsyncSession],
    tmp_path: Path,
) -> None:
    recording_id = await _record(repo, tmp_path / "host-a", session, _speech(4.0))
    # host B's worker sees the row but not the file (RECORDINGS_DIR is per machine)
    moved = tmp_path / "host-a-away"
    (tmp_path / "host-a").rename(moved)
    diarizer = Turns(TURNS)
    host_b = FinalDiarization(repo, tmp_path / "host-b", lambda: diarizer)
    try:
        assert await host_b.run_pending() == 0
        assert diarizer.calls == 0
        assert await host_b.run_pending() == 0  # skipped from then on, not claimed again
    finally:
        host_b.close()
    moved.rename(tmp_path / "host-a")
    host_a = FinalDiarization(repo, tmp_path / "host-a", lambda: diarizer)
    try:
        assert await host_a.run_pending() == 1
    finally:
        host_a.close()
    assert diarizer.calls == 1
    after = await repo.sessions.get_session_by_id(session.id)
    assert after is not None and after.transcript_version is TranscriptVersion.FINAL
    async with sessionmaker() as s:
        status = (
            await s.execute(select(TrackRecording.status).where(TrackRecording.id == recording_id))
        ).scalar_one()
    assert status is RecordingStatus.DIARIZED
