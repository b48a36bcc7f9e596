"""Usage and cost: per session, per space and per user, grouped, over dates; CSV parsed back."""

from __future__ import annotations

import csv
import datetime as dt
import io
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from store.models import TrackUsage
from store.records import SessionRecord, UsageGroupBy
from store.stores import Store
from tests.integration.api.conftest import Client
from tests.integration.api.support import admin, seed_usage, user

TODAY = dt.datetime.now(dt.UTC).date()


@pytest.fixture
async def sessions(repo: Store) -> tuple[SessionRecord, SessionRecord]:
    one = await repo.sessions.create_session(space_id="space-a", created_by="alice", title="Один")
    two = await repo.sessions.create_session(space_id="space-a", created_by="bob", title="Два")
    other = await repo.sessions.create_session(space_id="space-b", created_by="eve")
    await seed_usage(repo, one, "alice", "61")  # 2 billed minutes
    await seed_usage(repo, one, "bob", "60")  # 1
    await seed_usage(repo, two, "bob", "0.5", price="0.05")  # 1 at 0.05
    await seed_usage(repo, other, "eve", "600")  # another space: never counted here
    return one, two


async def _move(sm: async_sessionmaker[AsyncSession], user_id: str, when: dt.datetime) -> None:
    """Backdate a user's usage rows (reports select by the track's start)."""
    async with sm.begin() as db:
        await db.execute(
            update(TrackUsage).where(TrackUsage.user_id == user_id).values(started_at=when)
        )


async def test_session_usage_rows_and_totals(
    client: Client, sessions: tuple[SessionRecord, SessionRecord]
) -> None:
    one, _ = sessions
    response = await client.get(f"/api/sessions/{one.slug}/usage", headers=user("alice"))
    assert response.status == 200
    body = await response.json()
    rows = {r["participant_identity"]: r for r in body["rows"]}
    assert rows["alice"]["audio_seconds"] == "61.000" and rows["alice"]["billed_minutes"] == 2
    assert Decimal(rows["alice"]["total_cost"]) == Decimal("0.02")
    assert rows["bob"]["billed_minutes"] == 1 and Decimal(rows["bob"]["total_cost"]) == Decimal(
        "0.01"
    )
    (totals,) = body["totals"]
    assert (totals["tracks"], totals["billed_minutes"], totals["currency"]) == (2, 3, "USD")
    assert Decimal(totals["total_cost"]) == Decimal("0.03")
    assert Decimal(totals["audio_seconds"]) == Decimal("121")


async def test_session_usage_csv(
    client: Client, sessions: tuple[SessionRecord, SessionRecord]
) -> None:
    one, _ = sessions
    response = await client.get(
        f"/api/sessions/{one.slug}/usage", params={"format": "csv"}, headers=user("alice")
    )
    assert response.status == 200 and response.content_type == "text/csv"
    assert response.headers["Content-Disposition"] == f'attachment; filename="{one.slug}-usage.csv"'
    rows = list(csv.DictReader(io.StringIO((await response.read()).decode("utf-8"))))
    assert sorted(r["participant_identity"] for r in rows) == ["alice", "bob"]
    alice = next(r for r in rows if r["participant_identity"] == "alice")
    assert (alice["billed_minutes"], alice["participant_name"], alice["ended_at"] != "") == (
        "2",
        "Alice",
        True,
    )
    assert Decimal(alice["total_cost"]) == Decimal("0.02")


async def _report(client: Client, headers: dict[str, str], **params: str) -> dict[str, Any]:
    response = await client.get("/api/usage", params=params, headers=headers)
    assert response.status == 200, await response.text()
    data: dict[str, Any] = await response.json()
    return data


async def test_space_report_grouped(
    client: Client, sessions: tuple[SessionRecord, SessionRecord]
) -> None:
    one, two = sessions
    boss = user("boss", role="admin")
    by_user = await _report(client, boss, group_by="user")
    assert by_user["space_id"] == "space-a" and by_user["from"] == TODAY.replace(day=1).isoformat()
    assert {r["key"]: r["billed_minutes"] for r in by_user["rows"]} == {"alice": 2, "bob": 2}
    assert {r["key"]: Decimal(r["total_cost"]) for r in by_user["rows"]} == {
        "alice": Decimal("0.02"),
        "bob": Decimal("0.06"),
    }
    (totals,) = by_user["totals"]
    assert (totals["billed_minutes"], Decimal(totals["total_cost"])) == (4, Decimal("0.08"))

    by_session = await _report(client, boss, group_by="session")
    assert {r["key"]: r["tracks"] for r in by_session["rows"]} == {one.slug: 2, two.slug: 1}
    assert {r["session_title"] for r in by_session["rows"]} == {"Один", "Два"}

    by_participant = await _report(client, boss, group_by="participant")
    assert sorted((r["session_slug"], r["key"]) for r in by_participant["rows"]) == sorted(
        [(one.slug, "alice"), (one.slug, "bob"), (two.slug, "bob")]
    )

    by_day = await _report(client, boss, group_by="day")
    assert [r["key"] for r in by_day["rows"]] == [TODAY.isoformat()]
    assert by_day["rows"][0]["billed_minutes"] == 4


async def test_date_range_and_csv(
    client: Client,
    sessions: tuple[SessionRecord, SessionRecord],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    await _move(sessionmaker, "alice", dt.datetime(2026, 3, 31, 23, 59, tzinfo=dt.UTC))
    boss = user("boss", role="admin")
    march = await _report(client, boss, **{"from": "2026-03-01", "to": "2026-03-31"})
    assert [(r["key"], r["billed_minutes"]) for r in march["rows"]] == [("2026-03-31", 2)]
    april = await _report(client, boss, **{"from": "2026-04-01", "to": "2026-04-30"})
    assert april["rows"] == [] and april["totals"] == []
    response = await client.get(
        "/api/usage",
        params={"from": "2026-03-01", "to": "2026-03-31", "group_by": "user", "format": "csv"},
        headers=boss,
    )
    assert response.status == 200 and response.content_type == "text/csv"
    rows = list(csv.DictReader(io.StringIO((await response.read()).decode())))
    assert [(r["key"], r["billed_minutes"], r["total_cost"]) for r in rows] == [
        ("alice", "2", "0.020000")
    ]


async def test_members_see_only_their_own_usage(
    client: Client, sessions: tuple[SessionRecord, SessionRecord]
) -> None:
    mine = await _report(client, user("bob"), group_by="session")
    assert mine["user_id"] == "bob"
    assert sum(r["billed_minutes"] for r in mine["rows"]) == 2
    response = await client.get("/api/usage", params={"user_id": "alice"}, headers=user("bob"))
    assert response.status == 403
    admin_view = await _report(client, user("boss", role="admin"), user_id="alice")
    assert admin_view["totals"][0]["billed_minutes"] == 2
    service = await _report(client, admin("space-a"), user_id="bob", group_by="user")
    assert [r["key"] for r in service["rows"]] == ["bob"]
    response = await client.get("/api/usage", headers=admin())
    assert (await response.json())["error"]["code"] == "space_required"


@pytest.mark.parametrize(
    "params",
    [
        {"from": "2026-05-01", "to": "2026-04-01"},
        {"from": "2020-01-01", "to": "2026-01-01"},
        {"from": "yesterday"},
        {"group_by": "year"},
        {"format": "xml"},
    ],
)
async def test_bad_report_query_is_422(client: Client, params: dict[str, str]) -> None:
    response = await client.get("/api/usage", params=params, headers=user("a", role="admin"))
    assert response.status == 422
    assert (await response.json())["error"]["code"] == "validation_error"


@pytest.mark.parametrize("group_by", ["day", "participant", "user", "session"])
@pytest.mark.parametrize("user_id", [None, "bob", "nobody"])
async def test_space_report_is_the_general_report(
    repo: Store,
    sessions: tuple[SessionRecord, SessionRecord],
    group_by: str,
    user_id: str | None,
) -> None:
    """A report of one space in UTC (the API's, from statements built once) equals the same
    report computed by the general query (a zone named otherwise, equal to UTC)."""
    one, _ = sessions
    await seed_usage(repo, one, "carol", "3600.001", track_sid="TR_carol_2", price="0.02")
    await repo.sessions.delete_session(one.id)  # detached rows (billing history) group under None
    start = dt.datetime.combine(TODAY.replace(day=1), dt.time(), dt.UTC)
    end = start + dt.timedelta(days=40)
    args: dict[str, Any] = {
        "start": start,
        "end": end,
        "group_by": UsageGroupBy(group_by),
        "space_id": "space-a",
        "user_id": user_id,
    }
    mine = await repo.usage.usage_report(**args)
    assert mine == await repo.usage.usage_report(**args, tz="Etc/UTC")
    assert (mine.groups != []) == (user_id != "nobody")
