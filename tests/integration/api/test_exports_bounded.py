"""Bounded exports on a large seeded session (rows generated in SQL): text formats stream while
other requests answer, DOCX is capped, and a client that leaves stops the export."""

from __future__ import annotations

import asyncio
import io
import itertools
from collections.abc import Callable

import docx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.context import CONTEXT
from store.records import SessionRecord
from store.stores import Store
from tests.integration.api.conftest import Client, MakeClient
from tests.integration.api.support import error_of, user

ROWS = 60_000
WAIT_S = 60  # bound on waiting for the server's state (a failure, not a hang)


@pytest.fixture
async def large(repo: Store, sessionmaker: async_sessionmaker[AsyncSession]) -> SessionRecord:
    record = await repo.sessions.create_session(space_id="space-a", created_by="ivan", title="Long")
    async with sessionmaker.begin() as db:
        await db.execute(
            text(
                "INSERT INTO segments (session_id, utterance_id, track_sid, text, start_ms, end_ms)"
                " SELECT :sid, 'u' || g, 'TR_ivan', 'spoken words number ' || g, g * 1000,"
                " g * 1000 + 900 FROM generate_series(1, :n) AS g"
            ),
            {"sid": record.id, "n": ROWS},
        )
    return record


def _exports(client: Client, fmt: str, outcome: str) -> float:
    registry = client.server.app[CONTEXT].metrics.registry  # type: ignore[union-attr]
    value = registry.get_sample_value(
        "transcriber_exports_total", {"format": fmt, "outcome": outcome}
    )
    return value or 0.0


async def _until(check: Callable[[], bool]) -> None:
    async with asyncio.timeout(WAIT_S):
        for _ in itertools.count():
            if check():
                return
            await asyncio.sleep(0.02)


async def test_docx_over_the_cap_is_422_export_too_large(
    make_client: MakeClient, large: SessionRecord
) -> None:
    client = await make_client()  # default cap 5000 < ROWS
    path = f"/api/sessions/{large.slug}/transcript"
    response = await client.get(path, params={"format": "docx"}, headers=user("ivan"))
    assert await error_of(response) == (422, "export_too_large")
    assert "5000" in (await response.json())["error"]["message"]
    assert _exports(client, "docx", "too_large") == 1


async def test_docx_under_the_cap_is_built(
    make_client: MakeClient, repo: Store, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    client = await make_client(api_export_docx_max_segments=3)
    record = await repo.sessions.create_session(space_id="space-a", created_by="ivan")
    async with sessionmaker.begin() as db:
        await db.execute(
            text(
                "INSERT INTO segments (session_id, utterance_id, track_sid, text, start_ms, end_ms)"
                " SELECT :sid, 'u' || g, 'TR_x', 'line ' || g, g, g FROM generate_series(1, 3) g"
            ),
            {"sid": record.id},
        )
    path = f"/api/sessions/{record.slug}/transcript"
    response = await client.get(path, params={"format": "docx"}, headers=user("ivan"))
    assert response.status == 200
    document = docx.Document(io.BytesIO(await response.read()))
    assert len(document.paragraphs) == 4  # heading + 3
    async with sessionmaker.begin() as db:
        await db.execute(
            text(
                "INSERT INTO segments (session_id, utterance_id, track_sid, text, start_ms, end_ms)"
                " VALUES (:sid, 'u4', 'TR_x', 'one more', 9, 9)"
            ),
            {"sid": record.id},
        )
    response = await client.get(path, params={"format": "docx"}, headers=user("ivan"))
    assert await error_of(response) == (422, "export_too_large")


async def test_text_export_streams_while_other_requests_answer(
    client: Client, large: SessionRecord
) -> None:
    path = f"/api/sessions/{large.slug}/transcript"
    async with client.get(path, params={"format": "txt"}, headers=user("ivan")) as export:
        assert export.status == 200
        assert "Content-Length" not in export.headers  # streamed, chunked
        first = await export.content.readany()
        assert first.startswith(b"[00:00:01] ")
        # the export is open and unfinished: the API still answers
        assert (await client.get("/health")).status == 200
        page = await client.get(path, params={"limit": "5"}, headers=user("ivan"))
        assert page.status == 200 and len((await page.json())["items"]) == 5
        rest = await export.read()
    lines = (first + rest).decode().splitlines()
    assert len(lines) == ROWS and lines[-1].endswith(f"spoken words number {ROWS}")
    assert _exports(client, "txt", "ok") == 1


async def test_a_client_that_leaves_stops_the_export(client: Client, large: SessionRecord) -> None:
    path = f"/api/sessions/{large.slug}/transcript"
    export = await client.get(path, params={"format": "json"}, headers=user("ivan"))
    assert export.status == 200
    await export.content.readany()
    export.close()  # drop the connection mid-download
    await _until(lambda: _exports(client, "json", "cancelled") == 1)
    assert _exports(client, "json", "ok") == 0
    assert (await client.get("/health")).status == 200
