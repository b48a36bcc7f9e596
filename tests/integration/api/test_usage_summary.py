"""Usage by week and month, and the summary (sessions, minutes, cost, average length); JSON and
CSV, money as decimal strings."""

from __future__ import annotations

import csv
import datetime as dt
import io
from decimal import Decimal

import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from store.models import Session, TrackUsage
from store.records import SessionRecord
from store.stores import Store
from tests.integration.api.conftest import Client
from tests.integration.api.support import admin, seed_usage, user

UTC = dt.UTC
RANGE = {"from": "2026-03-01", "to": "2026-04-30"}


async def _place(
    sm: async_sessionmaker[AsyncSession],
    session: SessionRecord,
    started: dt.datetime,
    minutes: int | None,
) -> None:
    """Put a session (and its usage) at ``started``, lasting ``minutes`` (None: not ended)."""
    ended = None if minutes is None else started + dt.timedelta(minutes=minutes)
    async with sm.begin() as db:
        await db.execute(
            update(TrackUsage).where(TrackUsage.session_id == session.id).values(started_at=started)
        )
        await db.execute(
            update(Session)
            .where(Session.id == session.id)
            .values(status="ENDED" if ended else "LIVE", started_at=started, ended_at=ended)
        )


@pytest.fixture
async def meetings(
    repo: Store, sessionmaker: async_sessionmaker[AsyncSession]
) -> list[SessionRecord]:
    made = []
    for space, title in (("space-a", "mon"), ("space-a", "sun"), ("space-a", "next-week"),
                         ("space-a", "april"), ("space-b", "other")):  # fmt: skip
        made.append(await repo.sessions.create_session(space_id=space, created_by="x", title=title))
    mon, sun, nxt, april, other = made
    await seed_usage(repo, mon, "alice", "61")  # 2 minutes at 0.01
    await seed_usage(repo, mon, "bob", "60")  # 1
    await seed_usage(repo, sun, "bob", "0.5", price="0.05")  # 1 at 0.05
    await seed_usage(repo, nxt, "alice", "120")  # 2
    await seed_usage(repo, april, "alice", "601")  # 11
    await seed_usage(repo, other, "eve", "600")  # another space
    await _place(sessionmaker, mon, dt.datetime(2026, 3, 2, 9, tzinfo=UTC), 30)  # Monday, W10
    await _place(sessionmaker, sun, dt.datetime(2026, 3, 8, 23, tzinfo=UTC), 90)  # Sunday, W10
    await _place(sessionmaker, nxt, dt.datetime(2026, 3, 9, 0, 30, tzinfo=UTC), 60)  # W11
    await _place(sessionmaker, april, dt.datetime(2026, 4, 1, 8, tzinfo=UTC), None)  # live
    await _place(sessionmaker, other, dt.datetime(2026, 3, 3, 8, tzinfo=UTC), 10)
    return made


async def _get(client: Client, path: str, headers: dict[str, str], **params: str) -> dict:  # type: ignore[type-arg]
    response = await client.get(path, params=RANGE | params, headers=headers)
    assert response.status == 200, await response.text()
    return await response.json()  # type: ignore[no-any-return]


async def test_report_by_week_and_month(client: Client, meetings: list[SessionRecord]) -> None:
    by_week = await _get(client, "/api/usage", admin("space-a"), group_by="week")
    assert [
        (r["key"], r["day"], r["billed_minutes"], r["total_cost"]) for r in by_week["rows"]
    ] == [
        ("2026-W10", "2026-03-02", 4, "0.080000"),
        ("2026-W11", "2026-03-09", 2, "0.020000"),
        ("2026-W14", "2026-03-30", 11, "0.110000"),
    ]
    by_month = await _get(client, "/api/usage", admin("space-a"), group_by="month")
    assert [
        (r["key"], r["day"], r["billed_minutes"], r["total_cost"]) for r in by_month["rows"]
    ] == [
        ("2026-03", "2026-03-01", 6, "0.100000"),
        ("2026-04", "2026-04-01", 11, "0.110000"),
    ]
    assert by_week["totals"] == by_month["totals"]
    response = await client.get(
        "/api/usage",
        params=RANGE | {"group_by": "month", "format": "csv"},
        headers=admin("space-a"),
    )
    rows = list(csv.DictReader(io.StringIO((await response.read()).decode())))
    assert [(r["key"], r["total_cost"]) for r in rows] == [
        ("2026-03", "0.100000"),
        ("2026-04", "0.110000"),
    ]


async def test_summary_totals(client: Client, meetings: list[SessionRecord]) -> None:
    body = await _get(client, "/api/usage/summary", user("ann", "space-a", "admin"))
    assert (body["space_id"], body["from"], body["to"], body["user_id"]) == (
        "space-a",
        "2026-03-01",
        "2026-04-30",
        None,
    )
    (totals,) = body["totals"]
    assert totals == {
        "currency": "USD",
        "sessions": 4,
        "tracks": 5,
        "audio_seconds": "842.500",
        "billed_minutes": 17,
        "total_cost": "0.210000",
        # the three that ended: 30, 90 and 60 minutes; the live one is not averaged
        "average_session_seconds": "3600.000",
    }
    assert Decimal(totals["total_cost"]) == Decimal("0.21")

    # the report's filters: dates and user
    march = await _get(client, "/api/usage/summary", admin("space-a"), to="2026-03-08")
    assert (march["totals"][0]["sessions"], march["totals"][0]["total_cost"]) == (2, "0.080000")
    assert march["totals"][0]["average_session_seconds"] == "3600.000"
    bob = await _get(client, "/api/usage/summary", admin("space-a"), user_id="bob")
    assert (bob["totals"][0]["sessions"], bob["totals"][0]["billed_minutes"]) == (2, 2)


async def test_summary_csv_and_members(client: Client, meetings: list[SessionRecord]) -> None:
    response = await client.get(
        "/api/usage/summary", params=RANGE | {"format": "csv"}, headers=admin("space-a")
    )
    assert response.status == 200 and response.content_type == "text/csv"
    assert response.headers["Content-Disposition"] == (
        'attachment; filename="usage-summary-2026-03-01-2026-04-30.csv"'
    )
    (row,) = list(csv.DictReader(io.StringIO((await response.read()).decode())))
    assert (row["sessions"], row["billed_minutes"], row["total_cost"]) == ("4", "17", "0.210000")
    assert row["average_session_seconds"] == "3600.000"

    # members: their own usage only
    alice = await _get(client, "/api/usage/summary", user("alice", "space-a"))
    assert (alice["user_id"], alice["totals"][0]["billed_minutes"]) == ("alice", 15)
    response = await client.get(
        "/api/usage/summary", params=RANGE | {"user_id": "bob"}, headers=user("alice", "space-a")
    )
    assert response.status == 403


async def test_empty_summary(client: Client) -> None:
    body = await _get(client, "/api/usage/summary", admin("space-z"))
    assert body["totals"] == []
