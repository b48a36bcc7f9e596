"""The bot's finals on a real Postgres that refuses some of them: the refused ones are moved
aside, the rest are written, and no log line quotes a final (nor any SQL parameter)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.spool import FinalSpool, running
from core.logs import JsonFormatter
from store.records import FinalSegment
from store.stores import Store

MARKER = "zq-private-7d1207"  # a "transcript" no log line may quote


def logged(caplog: pytest.LogCaptureFixture) -> str:
    """Every record as the JSON log line prints it: message, details and traceback."""
    formatter = JsonFormatter()
    return "\n".join(formatter.format(r) for r in caplog.records)


def moved_aside(folder: Path) -> list[dict[str, object]]:
    return [
        json.loads(line)
        for path in folder.glob("w1.wal.bad-*")
        for line in path.read_bytes().splitlines()
    ]


async def test_refused_finals_are_moved_aside_without_a_word_in_the_logs(
    repo: Store, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, every level (SQLAlchemy's included)
    session = await repo.sessions.create_session(space_id="sp", created_by="u")
    await repo.sessions.participant_joined(session.id, "alice", name="Alice")

    def final(n: int, words: str, **kw: object) -> FinalSegment:
        return FinalSegment(
            session.id,
            f"SG_{n}",
            "TR_1",
            words,
            n * 1000,
            n * 1000 + 900,
            "alice",
            **kw,  # type: ignore[arg-type]
        )

    refused = [
        final(2, MARKER + "\x00"),  # Postgres: no NUL in text
        final(3, "ok", language=MARKER),  # longer than the column
        final(4, MARKER, confidence=MARKER),  # asyncpg: "invalid input ... $13: '<value>'"
    ]
    async with running(FinalSpool(repo.transcripts, tmp_path, "w1")) as spool:
        spool.put(final(1, "first"))
        for segment in refused:
            spool.put(segment)
        spool.put(final(5, "last"))
        assert await spool.flushed(10)

    page = await repo.transcripts.transcript_page(session.id)
    assert [s.text for s in page.items] == ["first", "last"]
    assert sorted(r["utterance_id"] for r in moved_aside(tmp_path)) == ["SG_2", "SG_3", "SG_4"]
    assert caplog.records, "the refusals are logged"
    assert MARKER not in logged(caplog)


async def test_sql_errors_do_not_quote_their_parameters(engine: AsyncEngine) -> None:
    """SQLAlchemy appends ``[parameters: (...)]`` to a failed statement's error unless the
    engine hides them. (Postgres and asyncpg may still quote a value they refuse: see
    ``core.logs.error_fields``.)"""
    with pytest.raises(DBAPIError) as caught:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT CAST(:v AS text), 1 / 0"), {"v": MARKER})
    assert "division by zero" in str(caught.value)
    assert MARKER not in str(caught.value)
