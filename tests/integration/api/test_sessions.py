"""Sessions: create, list, get, end, delete; auth (401/403), space isolation (404), admin key."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from store.enums import JobStatus, SessionStatus
from store.stores import Store
from tests.integration.api.conftest import Client
from tests.integration.api.support import admin, error_of, seed_transcript, seed_usage, user


async def _create(client: Client, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    response = await client.post("/api/sessions", json=body, headers=headers)
    assert response.status == 201, await response.text()
    data: dict[str, Any] = await response.json()
    return data


async def test_create_generates_slug_and_owner(client: Client) -> None:
    data = await _create(client, user("alice"), title="Планёрка", language="ru")
    assert len(data["slug"]) == 12 and data["slug"].isalnum()
    assert data["title"] == "Планёрка" and data["language"] == "ru"
    assert (data["space_id"], data["created_by"], data["status"]) == ("space-a", "alice", "CREATED")
    assert data["transcription"] is None
    other = await _create(client, user("alice"))
    assert other["slug"] != data["slug"] and other["title"] == ""


async def test_get_and_space_isolation(client: Client) -> None:
    slug = (await _create(client, user("alice")))["slug"]
    response = await client.get(f"/api/sessions/{slug}", headers=user("bob"))
    assert response.status == 200 and (await response.json())["slug"] == slug
    # another space: the session does not exist for this caller
    for path in ("", "/end", "/token", "/participants", "/transcript", "/usage"):
        method = "POST" if path == "/end" else "GET"
        response = await client.request(
            method, f"/api/sessions/{slug}{path}", headers=user("mallory", space="space-b")
        )
        assert await error_of(response) == (404, "not_found"), path
    response = await client.delete(f"/api/sessions/{slug}", headers=user("m", "space-b", "admin"))
    assert await error_of(response) == (404, "not_found")
    assert await error_of(await client.get("/api/sessions/nosuchslug", headers=user("a"))) == (
        404,
        "not_found",
    )
    assert await error_of(await client.get("/api/sessions/%00bad", headers=user("a"))) == (
        404,
        "not_found",
    )


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer nope"},
        {"X-Api-Key": "wrong"},
        {"Authorization": "Basic YTpi"},
    ],
)
async def test_missing_or_wrong_credentials_are_401(
    client: Client, headers: dict[str, str]
) -> None:
    assert await error_of(await client.get("/api/sessions", headers=headers)) == (
        401,
        "unauthorized",
    )
    response = await client.post("/api/sessions", json={}, headers=headers)
    assert await error_of(response) == (401, "unauthorized")


async def test_list_newest_first_paginated_expired_hidden(client: Client, repo: Store) -> None:
    t0 = datetime.now(UTC) - timedelta(days=3)
    made = [
        await repo.sessions.create_session(
            space_id="space-a", created_by="u", now=t0 + timedelta(hours=i)
        )
        for i in range(5)
    ]
    await repo.sessions.create_session(space_id="space-b", created_by="u")
    # the oldest never started: the sweeper expires it
    await repo.sessions.sweep_sessions(
        inactive_after=timedelta(hours=1), expire_after=timedelta(hours=71.5)
    )
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": "2"} | ({"cursor": cursor} if cursor else {})
        response = await client.get("/api/sessions", params=params, headers=user("x"))
        assert response.status == 200
        page = await response.json()
        seen += [s["slug"] for s in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [s.slug for s in reversed(made[1:])]
    response = await client.get(
        "/api/sessions", params={"include_expired": "true"}, headers=user("x")
    )
    everything = await response.json()
    assert [s["slug"] for s in everything["items"]] == [s.slug for s in reversed(made)]
    assert everything["items"][-1]["status"] == "EXPIRED"
    response = await client.get("/api/sessions", params={"status": "EXPIRED"}, headers=user("x"))
    assert [s["slug"] for s in (await response.json())["items"]] == [made[0].slug]


@pytest.mark.parametrize(
    "params",
    [
        {"limit": "0"},
        {"limit": "101"},
        {"limit": "x"},
        {"cursor": "!!!"},
        {"cursor": "bm90IGEgY3Vyc29y"},
        {"status": "SLEEPING"},
    ],
)
async def test_list_bad_query_is_422(client: Client, params: dict[str, str]) -> None:
    response = await client.get("/api/sessions", params=params, headers=user("x"))
    assert await error_of(response) == (422, "validation_error")


async def test_end_by_creator_or_admin_only(client: Client, repo: Store) -> None:
    slug = (await _create(client, user("alice")))["slug"]
    record = await repo.sessions.get_session(slug)
    assert record is not None
    await repo.jobs.request_transcription(record.id)
    response = await client.post(f"/api/sessions/{slug}/end", headers=user("bob"))
    assert await error_of(response) == (403, "forbidden")
    response = await client.post(f"/api/sessions/{slug}/end", headers=user("alice"))
    body = await response.json()
    assert response.status == 200 and body["status"] == "ENDED" and body["ended_at"]
    assert body["transcription"]["status"] == "STOPPED"
    again = await client.post(f"/api/sessions/{slug}/end", headers=user("boss", role="admin"))
    assert again.status == 200 and (await again.json())["ended_at"] == body["ended_at"]


async def test_delete_removes_session_data_but_keeps_billing(client: Client, repo: Store) -> None:
    slug = (await _create(client, user("alice")))["slug"]
    record = await repo.sessions.get_session(slug)
    assert record is not None
    await seed_transcript(repo, record, [("alice", "Алиса", 0, 1000, "Привет")])
    await seed_usage(repo, record, "alice", "61")
    response = await client.delete(f"/api/sessions/{slug}", headers=user("bob"))
    assert await error_of(response) == (403, "forbidden")
    response = await client.delete(f"/api/sessions/{slug}", headers=user("alice"))
    assert response.status == 204
    assert await repo.sessions.get_session(slug) is None
    assert await repo.sessions.list_participants(record.id) == []
    assert (await repo.transcripts.transcript_page(record.id)).items == []
    assert await error_of(await client.get(f"/api/sessions/{slug}", headers=user("a"))) == (
        404,
        "not_found",
    )
    # the usage row stays in the space's report (billing history)
    response = await client.get(
        "/api/usage", params={"group_by": "user"}, headers=user("boss", role="admin")
    )
    report = await response.json()
    assert report["totals"][0]["billed_minutes"] == 2
    assert report["rows"][0]["key"] == "alice"


async def test_admin_key_names_space_and_user_with_headers(client: Client) -> None:
    response = await client.post("/api/sessions", json={}, headers=admin())
    assert await error_of(response) == (400, "space_required")
    created = await _create(client, admin("space-z", "svc-user"))
    assert (created["space_id"], created["created_by"]) == ("space-z", "svc-user")
    anonymous = await _create(client, admin("space-z"))
    assert anonymous["created_by"] is None  # owned by nobody (no JWT can be "service")
    # the key sees every space by slug; with X-Space-Id it is held to that space
    assert (await client.get(f"/api/sessions/{created['slug']}", headers=admin())).status == 200
    response = await client.get(f"/api/sessions/{created['slug']}", headers=admin("space-a"))
    assert await error_of(response) == (404, "not_found")
    listed = await (await client.get("/api/sessions", headers=admin("space-z"))).json()
    assert {s["slug"] for s in listed["items"]} == {created["slug"], anonymous["slug"]}
    response = await client.get("/api/sessions", headers={**admin(), "X-Space-Id": "x" * 65})
    assert await error_of(response) == (400, "bad_request")


async def test_session_body_shows_transcription_status(client: Client, repo: Store) -> None:
    slug = (await _create(client, user("alice")))["slug"]
    record = await repo.sessions.get_session(slug)
    assert record is not None
    job = await repo.jobs.request_transcription(record.id)
    assert job.status is JobStatus.REQUESTED
    body = await (await client.get(f"/api/sessions/{slug}", headers=user("alice"))).json()
    assert body["transcription"]["status"] == "REQUESTED"
    assert body["status"] == SessionStatus.CREATED.value
