"""A room's tracks: admission by the limits, transcription, usage written as checkpoints."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np

from bot.config import BotSettings
from bot.pipeline.types import TrackSettings
from bot.pipeline.usage import UsageMeter
from bot.recording import SessionRecorder
from bot.track_recording import TrackRecordings, read_pcm16
from bot.transcription import RoomTranscription, track_settings
from core.errors import LimitExceeded, StorageError
from store.enums import DiarizationMode, SessionStatus
from store.records import LimitCheck, LimitReason, SessionRecord, UsageCheckpoint
from tests.unit.bot.fakes import ArraySource, ListSink, engine, speaker, speech

NOW = datetime.now(UTC)
SESSION = SessionRecord(
    1, "room-1", "Meeting", "space", "user", SessionStatus.LIVE, None, NOW, NOW, None, NOW
)


class FakeRepo:
    """The storage calls the recorder makes (the sessions and usage stores in one object);
    ``open_error`` fails opening a usage row."""

    def __init__(
        self, open_error: Exception | None = None, session: SessionRecord = SESSION
    ) -> None:
        self.sessions = self.usage = self
        self.open_error = open_error
        self.session = session
        self.opened: list[str] = []
        self.checkpoints: list[UsageCheckpoint] = []

    async def participant_joined(self, *args: Any, **kwargs: Any) -> None:
        return None

    async def get_session_by_id(self, session_id: int) -> SessionRecord:
        return self.session

    async def open_track_usage(self, *, track_sid: str, **kwargs: Any) -> None:
        if self.open_error is not None:
            raise self.open_error
        self.opened.append(track_sid)

    async def checkpoint_usage(self, checkpoints: list[UsageCheckpoint]) -> int:
        self.checkpoints.extend(checkpoints)
        return len(checkpoints)


def compose(repo: FakeRepo) -> tuple[RoomTranscription, SessionRecorder, ListSink]:
    meter = UsageMeter()
    recorder = SessionRecorder(repo, SESSION, BotSettings(), "fake", meter)  # type: ignore[arg-type]
    stored = ListSink()
    return RoomTranscription(engine(), recorder, stored, meter), recorder, stored


async def test_a_track_over_the_limits_is_not_transcribed_and_its_usage_is_closed() -> None:
    refused = LimitExceeded(LimitCheck(LimitReason.SESSION_TRACKS, 16, None, 0, None))
    repo = FakeRepo(open_error=refused)
    transcription, recorder, stored = compose(repo)
    audio, room = ArraySource(speech()), ListSink()
    await asyncio.wait_for(transcription.transcribe(speaker("TR_1"), audio, room), 10)
    assert audio.closed
    assert stored.items == [] and room.items == []
    await recorder.checkpoint()
    assert [(c.track_sid, c.audio_seconds, c.ended) for c in repo.checkpoints] == [
        ("TR_1", Decimal("0.000"), True)
    ]


async def test_a_track_is_transcribed_while_the_database_is_down_and_billed_after() -> None:
    repo = FakeRepo(open_error=StorageError("database unreachable"))
    transcription, recorder, stored = compose(repo)
    room = ListSink()
    await asyncio.wait_for(
        transcription.transcribe(speaker("TR_1"), ArraySource(speech()), room), 10
    )
    assert [i.caption.text for i in stored.items if i.caption.is_final] == ["hello there"]
    assert [i.caption.text for i in room.items if i.caption.is_final] == ["hello there"]
    await recorder.checkpoint()
    assert repo.checkpoints == [], "no usage written before its row is open"
    repo.open_error = None  # the database is back
    await recorder.checkpoint()
    assert repo.opened == ["TR_1"]
    [written] = repo.checkpoints
    assert float(written.audio_seconds) == round(len(speech()) / 16_000, 3)
    assert (written.final_count, written.ended) == (1, True)
    await recorder.checkpoint()
    assert len(repo.checkpoints) == 1, "written once"


def test_track_settings_come_from_the_session() -> None:
    session = dataclasses.replace(
        SESSION,
        language="ru-RU",
        hotwords="Grafana",
        initial_prompt="Планёрка.",
        diarization=DiarizationMode.AUTO,
    )
    multilingual = engine()
    multilingual.recognizer.multilingual = True
    settings = track_settings(session, multilingual)
    assert settings == TrackSettings(
        model="fake",
        language="ru",
        hotwords="Grafana",
        initial_prompt="Планёрка.",
        diarization="auto",
    )
    # an English-only model cannot be forced to Russian: it decodes English as always
    assert track_settings(session, engine()).language is None
    english = dataclasses.replace(session, language="en")
    assert track_settings(english, engine()).language == "en"
    assert track_settings(SESSION, multilingual) == TrackSettings(model="fake")


class FakeRecordings:
    """The recording rows (``store.recordings``) the recorder writes."""

    def __init__(self) -> None:
        self.started: list[dict[str, Any]] = []
        self.ended: list[tuple[int, int]] = []

    async def start(self, **row: Any) -> int:
        self.started.append(row)
        return len(self.started)

    async def stream_ended(self, recording_id: int, size_bytes: int) -> None:
        self.ended.append((recording_id, size_bytes))


async def test_a_diarized_tracks_audio_is_kept_and_an_undiarized_ones_is_not(
    tmp_path: Path,
) -> None:
    for mode, kept in ((DiarizationMode.OFF, False), (DiarizationMode.AUTO, True)):
        session = dataclasses.replace(SESSION, diarization=mode)
        repo = FakeRepo(session=session)
        rows = FakeRecordings()
        repo.recordings = rows  # type: ignore[attr-defined]
        meter = UsageMeter()
        recorder = SessionRecorder(repo, session, BotSettings(), "fake", meter)  # type: ignore[arg-type]
        folder = tmp_path / mode.value
        recordings = TrackRecordings(repo, folder, worker_id="w")  # type: ignore[arg-type]
        transcription = RoomTranscription(
            engine(), recorder, ListSink(), meter, recordings=recordings
        )
        audio = speech()
        await asyncio.wait_for(
            transcription.transcribe(speaker("TR_1"), ArraySource(audio), ListSink()), 10
        )
        files = sorted(folder.glob("*/*.pcm"))
        if not kept:
            assert (files, rows.started) == ([], [])
            continue
        assert len(files) == 1 and files[0].parent.name == str(session.id)
        assert np.allclose(read_pcm16(files[0]), audio, atol=1 / 32768)
        assert [(r["track_sid"], r["participant_identity"], r["path"]) for r in rows.started] == [
            ("TR_1", "p-TR_1", str(files[0]))
        ]
        assert rows.started[0]["offset_ms"] >= 0
        assert rows.ended == [(1, 2 * len(audio))]


def test_the_participants_diarization_mode_overrides_the_sessions() -> None:
    on = dataclasses.replace(SESSION, diarization=DiarizationMode.ON)
    assert track_settings(on, engine()).diarization == "on"
    assert track_settings(on, engine(), "off").diarization == "off"
    assert track_settings(SESSION, engine(), "auto").diarization == "auto"
    assert track_settings(on, engine(), "unknown").diarization == "on"
