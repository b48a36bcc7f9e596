"""Failures in a room or a track are logged by type and place, never by message: a message may
quote a caption, an identity or the SQL parameters of a failed write."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from bot.config import BotSettings
from bot.pipeline.types import SpokenCaption
from bot.pipeline.usage import UsageMeter
from bot.worker import Worker, _RoomHandle
from core.logs import JsonFormatter
from tests.unit.bot.fakes import ArraySource, ListSink, engine, speech
from tests.unit.bot.test_track_pipeline import pipeline
from tests.unit.bot.test_worker_claims import lease

SECRET = "alice@example.org said: the merger closes friday"


def logged(caplog: pytest.LogCaptureFixture) -> str:
    """Every record as the JSON log line prints it: message, details and traceback."""
    formatter = JsonFormatter()
    return "\n".join(formatter.format(r) for r in caplog.records)


class QuotingError(Exception):
    """Like SQLAlchemy's DBAPIError or asyncpg's DataError: the message quotes the values."""


class FailingRepo:
    """The session read fails with an error that quotes data, as a refused statement does."""

    def __init__(self) -> None:
        self.sessions = self
        self.jobs = self
        self.released = 0

    async def get_session_by_id(self, session_id: int) -> None:
        try:
            raise ValueError(f"invalid input for query argument $1: {SECRET!r}")
        except ValueError as exc:
            raise QuotingError(f"[parameters: ({SECRET!r},)]") from exc

    async def release_job(self, lease: Any) -> None:
        self.released += 1


class Engine:
    speaking_streams = 0


async def test_a_failed_room_is_logged_without_the_errors_message(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    repo = FailingRepo()
    worker = Worker(BotSettings(), repo, Engine(), None, "")  # type: ignore[arg-type]
    handle = _RoomHandle(lease(1, 1))
    worker.rooms[1] = handle
    await worker._room(handle)
    assert repo.released == 1 and worker.rooms == {}
    assert SECRET not in logged(caplog)
    (record,) = [r for r in caplog.records if r.getMessage() == "room failed"]
    assert record.error == "QuotingError"  # type: ignore[attr-defined]
    assert record.error_causes == "ValueError"  # type: ignore[attr-defined]
    assert "get_session_by_id" in record.error_at  # type: ignore[attr-defined]


class QuotingSink(ListSink):
    async def publish(self, item: SpokenCaption) -> None:
        raise QuotingError(f"cannot store {item.caption.text!r}")


async def test_a_failed_track_is_logged_without_the_errors_message(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    eng, meter = engine(), UsageMeter()
    run = pipeline(eng, "TR_1", ArraySource(speech()), QuotingSink(), ListSink(), meter).run()
    await asyncio.wait_for(run, 10)
    await eng.aclose()
    assert "hello there" not in logged(caplog)  # the caption the fake recognizer heard
    (record,) = [r for r in caplog.records if r.getMessage() == "track pipeline failed"]
    assert record.error == "ExceptionGroup(QuotingError)"  # type: ignore[attr-defined]


async def test_a_refused_livekit_connection_is_logged_without_the_sdks_message(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The SDK's connect error may quote the URL it dialled, access token included."""
    from bot.livekit.room import RoomAgent
    from core.errors import LiveKitUnavailable

    caplog.set_level(logging.DEBUG)
    token = "eyJhbGciOiJIUzI1NiJ9.secret-claims.signature"
    stop = asyncio.Event()

    async def refused(url: str, token_: str, stop_: asyncio.Event) -> None:
        stop.set()  # one try only
        raise LiveKitUnavailable(f"failed to connect to {url}/rtc?access_token={token_}")

    agent = RoomAgent(listener=None)  # type: ignore[arg-type]  # never reached
    monkeypatch.setattr(agent, "run", refused)
    await agent.join("ws://10.0.0.1:7880", token, stop, attempts=2)
    assert "livekit connect failed" in logged(caplog)
    assert "LiveKitUnavailable" in logged(caplog)
    assert token not in logged(caplog) and "access_token" not in logged(caplog)
