"""Participants' powers: ending a session when the space allows it, the ``active`` filter, and
corrections of final segments (original kept, who/when, pages/search/exports corrected)."""

from __future__ import annotations

import json

import pytest
import srt

from store.records import FinalSegment, SessionRecord, UpsertOutcome
from store.stores import Store
from tests.integration.api.conftest import Client
from tests.integration.api.support import admin, error_of, seed_transcript, user

LINES = [
    ("ivan", "Иван", 0, 2_000, "Бюджет утверждён, кубернетис обновим."),
    ("alice", "Alice", 2_100, 4_000, "The grafana dashboard is ready."),
]


@pytest.fixture
async def session(repo: Store) -> SessionRecord:
    record = await repo.sessions.create_session(space_id="space-a", created_by="ivan", title="t")
    await seed_transcript(repo, record, LINES)  # ivan and alice are participants
    return record


async def _segment_ids(client: Client, slug: str) -> list[int]:
    page = await (await client.get(f"/api/sessions/{slug}/transcript", headers=user("x"))).json()
    return [item["id"] for item in page["items"]]


# -- ending -------------------------------------------------------------------------------------


async def test_a_participant_ends_the_session_only_when_the_space_allows(
    client: Client, session: SessionRecord
) -> None:
    end = f"/api/sessions/{session.slug}/end"
    assert await error_of(await client.post(end, headers=user("alice"))) == (403, "forbidden")
    settings = await (await client.get("/api/space/settings", headers=user("alice"))).json()
    assert settings == {"space_id": "space-a", "participants_may_end": False}
    # only an admin of the space turns it on
    body = {"participants_may_end": True}
    response = await client.put("/api/space/settings", json=body, headers=user("alice"))
    assert await error_of(response) == (403, "forbidden")
    response = await client.put(
        "/api/space/settings", json=body, headers=user("root", "space-a", "admin")
    )
    assert response.status == 200 and (await response.json())["participants_may_end"] is True
    # a member of the space who never joined this session still may not
    assert await error_of(await client.post(end, headers=user("carol"))) == (403, "forbidden")
    response = await client.post(end, headers=user("alice"))
    assert response.status == 200 and (await response.json())["status"] == "ENDED"


async def test_space_settings_are_per_space(client: Client, session: SessionRecord) -> None:
    response = await client.put(
        "/api/space/settings", json={"participants_may_end": True}, headers=admin("space-b")
    )
    assert response.status == 200
    other = await (await client.get("/api/space/settings", headers=user("m", "space-b"))).json()
    assert other == {"space_id": "space-b", "participants_may_end": True}
    mine = await (await client.get("/api/space/settings", headers=user("alice"))).json()
    assert mine["participants_may_end"] is False
    # space-b's switch does not let space-b's users near space-a's session
    response = await client.post(f"/api/sessions/{session.slug}/end", headers=user("m", "space-b"))
    assert await error_of(response) == (404, "not_found")
    end = f"/api/sessions/{session.slug}/end"
    assert await error_of(await client.post(end, headers=user("alice"))) == (403, "forbidden")


# -- the active filter --------------------------------------------------------------------------


async def test_participant_list_filters_by_active(
    client: Client, repo: Store, session: SessionRecord
) -> None:
    await repo.sessions.participant_left(session.id, "alice")
    path = f"/api/sessions/{session.slug}/participants"

    async def identities(params: dict[str, str]) -> list[str]:
        response = await client.get(path, params=params, headers=user("x"))
        assert response.status == 200
        return [p["identity"] for p in (await response.json())["items"]]

    assert sorted(await identities({})) == ["alice", "ivan"]
    assert await identities({"active": "true"}) == ["ivan"]
    assert await identities({"active": "false"}) == ["alice"]
    response = await client.get(path, params={"active": "maybe"}, headers=user("x"))
    assert await error_of(response) == (422, "validation_error")
    response = await client.get(path, params={"active": "true"}, headers=user("m", "space-b"))
    assert await error_of(response) == (404, "not_found")


# -- corrections --------------------------------------------------------------------------------


async def test_a_correction_keeps_the_original_and_shows_everywhere(
    client: Client, repo: Store, session: SessionRecord
) -> None:
    first, _ = await _segment_ids(client, session.slug)
    path = f"/api/sessions/{session.slug}/transcript/segments/{first}"
    fixed = "Бюджет утверждён, Kubernetes обновим."
    response = await client.patch(path, json={"text": fixed}, headers=user("alice"))
    assert response.status == 200, await response.text()
    out = await response.json()
    assert (out["text"], out["original_text"], out["corrected_by"]) == (fixed, LINES[0][4], "alice")
    assert out["corrected_at"] is not None

    page = await (
        await client.get(f"/api/sessions/{session.slug}/transcript", headers=user("x"))
    ).json()
    assert page["items"][0]["text"] == fixed
    assert page["items"][0]["original_text"] == LINES[0][4]
    # the search vector follows the correction
    found = await (
        await client.get(
            f"/api/sessions/{session.slug}/transcript",
            params={"q": "Kubernetes"},
            headers=user("x"),
        )
    ).json()
    assert [i["id"] for i in found["items"]] == [first]
    gone = await (
        await client.get(
            f"/api/sessions/{session.slug}/transcript",
            params={"q": "кубернетис"},
            headers=user("x"),
        )
    ).json()
    assert gone["items"] == []
    # exports
    base = f"/api/sessions/{session.slug}/transcript"
    subtitles = await (await client.get(base, params={"format": "srt"}, headers=user("x"))).text()
    assert next(iter(srt.parse(subtitles))).content == f"Иван: {fixed}"
    text = await (await client.get(base, params={"format": "txt"}, headers=user("x"))).text()
    assert fixed in text and "кубернетис" not in text
    doc = json.loads(
        await (await client.get(base, params={"format": "json"}, headers=user("x"))).text()
    )
    assert doc["segments"][0]["text"] == fixed

    # a second correction keeps the bot's original
    response = await client.patch(path, json={"text": "Бюджет утверждён."}, headers=user("ivan"))
    out = await response.json()
    assert (out["text"], out["original_text"], out["corrected_by"]) == (
        "Бюджет утверждён.",
        LINES[0][4],
        "ivan",
    )
    # the bot re-sending that final (a spool replay) does not undo the correction
    replay = FinalSegment(
        session_id=session.id,
        utterance_id="u0",
        track_sid="TR_ivan",
        text="Бюджет утверждён, кубернетис обновим!",
        start_ms=0,
        end_ms=2_000,
        participant_identity="ivan",
    )
    assert await repo.transcripts.upsert_final_segment(replay) is UpsertOutcome.UNCHANGED
    page = await (await client.get(base, headers=user("x"))).json()
    assert page["items"][0]["text"] == "Бюджет утверждён."


async def test_correction_is_scoped_and_checked(
    client: Client, repo: Store, session: SessionRecord
) -> None:
    first, _ = await _segment_ids(client, session.slug)
    path = f"/api/sessions/{session.slug}/transcript/segments/{first}"
    body = {"text": "x"}
    # another space: 404 for users and for the admin key acting for it
    for headers in (user("m", "space-b"), user("m", "space-b", "admin"), admin("space-b")):
        assert await error_of(await client.patch(path, json=body, headers=headers)) == (
            404,
            "not_found",
        )
    # a member who is not a participant of the session
    assert await error_of(await client.patch(path, json=body, headers=user("carol"))) == (
        403,
        "forbidden",
    )
    # a segment of another session, an unknown id, a non-numeric id
    other = await repo.sessions.create_session(space_id="space-a", created_by="ivan")
    for bad in (
        f"/api/sessions/{other.slug}/transcript/segments/{first}",
        f"/api/sessions/{session.slug}/transcript/segments/999999999",
        f"/api/sessions/{session.slug}/transcript/segments/abc",
    ):
        response = await client.patch(bad, json=body, headers=user("ivan"))
        assert await error_of(response) == (404, "not_found"), bad
    for bad_body in ({"text": ""}, {"text": "a\x00b"}, {}):
        response = await client.patch(path, json=bad_body, headers=user("ivan"))
        assert await error_of(response) == (422, "validation_error"), bad_body
    page = await (
        await client.get(f"/api/sessions/{session.slug}/transcript", headers=user("x"))
    ).json()
    assert page["items"][0]["text"] == LINES[0][4] and page["items"][0]["original_text"] is None
    # an admin of the space may correct
    response = await client.patch(path, json={"text": "ok"}, headers=admin("space-a"))
    assert response.status == 200 and (await response.json())["corrected_by"] == "service"


async def test_openapi_documents_the_new_routes(client: Client) -> None:
    doc = await (await client.get("/api/openapi.json")).json()
    paths = doc["paths"]
    correct = paths["/api/sessions/{slug}/transcript/segments/{segment_id}"]["patch"]
    assert {"403", "404", "422"} <= set(correct["responses"])
    assert {"get", "put"} <= set(paths["/api/space/settings"])
    params = paths["/api/sessions/{slug}/participants"]["get"]["parameters"]
    assert "active" in {p["name"] for p in params}
