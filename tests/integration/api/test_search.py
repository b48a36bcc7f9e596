"""GET /api/search: across the sessions of a space, ranked, highlighted, paginated, linked."""

from __future__ import annotations

import pytest

from store.records import FinalSegment, SessionRecord
from store.stores import Store
from tests.integration.api.conftest import Client
from tests.integration.api.support import admin, error_of, seed_transcript, user


async def _session(
    repo: Store, space: str, title: str, lines: list[str], *, language: str | None = "en"
) -> SessionRecord:
    record = await repo.sessions.create_session(
        space_id=space, created_by="ivan", title=title, language=language
    )
    await repo.sessions.participant_joined(record.id, "alice", name="Alice <A&B>")
    await repo.transcripts.upsert_final_segments(
        [
            FinalSegment(
                session_id=record.id,
                utterance_id=f"u{n}",
                track_sid="TR_alice",
                text=text,
                start_ms=n * 10_000,
                end_ms=n * 10_000 + 5_000,
                participant_identity="alice",
                language="en",
            )
            for n, text in enumerate(lines)
        ]
    )
    return record


async def _search(client: Client, headers: dict[str, str], **params: str) -> dict:  # type: ignore[type-arg]
    response = await client.get("/api/search", params=params, headers=headers)
    assert response.status == 200, await response.text()
    return await response.json()  # type: ignore[no-any-return]


async def test_ranked_across_sessions_within_the_space(client: Client, repo: Store) -> None:
    weekly = await _session(
        repo,
        "space-a",
        "Weekly",
        ["Nothing to see here", "The budget, the budget review and budgets for Q3"],
    )
    planning = await _session(
        repo, "space-a", "Planning", ["We talked about many things and once about the budget"]
    )
    await _session(repo, "space-b", "Other space", ["budget budget budget budget"])

    body = await _search(client, user("bob", "space-a"), q="budget")
    hits = body["items"]
    # dense matches rank first; the other space's far denser segment is not there
    assert [(h["session_slug"], h["start_ms"]) for h in hits] == [
        (weekly.slug, 10_000),
        (planning.slug, 0),
    ]
    assert hits[0]["rank"] > hits[1]["rank"] > 0
    assert hits[0]["session_title"] == "Weekly" and hits[0]["speaker"] == "Alice <A&B>"
    assert body["next_offset"] is None

    # the admin key names the space; without one it is refused
    assert len((await _search(client, admin("space-b"), q="budget"))["items"]) == 1
    response = await client.get("/api/search", params={"q": "budget"}, headers=admin())
    assert await error_of(response) == (400, "space_required")


async def test_snippet_is_escaped_html_with_marked_matches(client: Client, repo: Store) -> None:
    await _session(
        repo,
        "space-a",
        "T",
        ["Budget <script>alert(1)</script> if 1 < 2 & 3 > 0 \x02reviews\x03 of budgets"],
    )
    (hit,) = (await _search(client, user("bob", "space-a"), q="budget review"))["items"]
    snippet = hit["snippet_html"]
    # the text search parser drops tag-like tokens from snippets; the rest is escaped
    assert "<script>" not in snippet and "script" not in snippet
    assert "1 &lt; 2 &amp; 3 &gt; 0" in snippet
    assert snippet.count("<mark>") == 3 and snippet.count("</mark>") == 3
    assert "<mark>Budget</mark>" in snippet and "<mark>reviews</mark>" in snippet
    assert "<mark>budgets</mark>" in snippet
    assert "\x02" not in snippet and "\x03" not in snippet
    assert hit["text"].startswith("Budget <script>")  # the plain text, unescaped (JSON string)


async def test_language_picks_the_stemming(client: Client, repo: Store) -> None:
    ru = await repo.sessions.create_session(
        space_id="space-a", created_by="ivan", title="Планёрка", language="ru"
    )
    await seed_transcript(repo, ru, [("ivan", "Иван", 0, 2_000, "Бюджет утверждён, ёлки-палки")])
    await _session(repo, "space-a", "No language", ["meetings were long"], language=None)
    hits = (await _search(client, user("bob", "space-a"), q="бюджета"))["items"]
    assert [h["session_slug"] for h in hits] == [ru.slug]
    assert "<mark>Бюджет</mark>" in hits[0]["snippet_html"]
    # no language: the segments' detected one (en) picks English stemming
    assert len((await _search(client, user("bob", "space-a"), q="meeting"))["items"]) == 1


async def test_pages_by_bounded_offset(client: Client, repo: Store) -> None:
    await _session(repo, "space-a", "A", [f"deploy number {n}" for n in range(7)])
    seen: list[int] = []
    offset: int | None = 0
    pages = 0
    while offset is not None:
        body = await _search(
            client, user("bob", "space-a"), q="deploy", limit="3", offset=str(offset)
        )
        seen += [h["segment_id"] for h in body["items"]]
        offset = body["next_offset"]
        pages += 1
    assert pages == 3 and len(seen) == len(set(seen)) == 7
    response = await client.get(
        "/api/search", params={"q": "deploy", "offset": "1001"}, headers=user("bob", "space-a")
    )
    assert await error_of(response) == (422, "validation_error")


async def test_link_opens_the_transcript_at_the_segment(client: Client, repo: Store) -> None:
    record = await _session(
        repo, "space-a", "A", ["intro", "small talk", "the release date is friday", "bye"]
    )
    (hit,) = (await _search(client, user("bob", "space-a"), q="release"))["items"]
    assert hit["start_ms"] == 20_000 and hit["end_ms"] == 25_000
    url = hit["transcript_url"]
    assert url.startswith(f"/api/sessions/{record.slug}/transcript?cursor=")
    response = await client.get(url, headers=user("bob", "space-a"))
    page = await response.json()
    assert [s["text"] for s in page["items"]] == ["the release date is friday", "bye"]
    assert page["items"][0]["id"] == hit["segment_id"]


async def test_one_session_and_the_space_boundary(client: Client, repo: Store) -> None:
    a1 = await _session(repo, "space-a", "A1", ["invoice sent"])
    await _session(repo, "space-a", "A2", ["invoice paid"])
    b1 = await _session(repo, "space-b", "B1", ["invoice lost"])
    only = await _search(client, user("bob", "space-a"), q="invoice", session=a1.slug)
    assert [h["session_slug"] for h in only["items"]] == [a1.slug]
    for slug in (b1.slug, "nosuchsession"):
        response = await client.get(
            "/api/search", params={"q": "invoice", "session": slug}, headers=user("bob", "space-a")
        )
        assert await error_of(response) == (404, "not_found")


@pytest.mark.parametrize(
    "params", [{}, {"q": ""}, {"q": "x", "limit": "51"}, {"q": "x", "session": "../x"}]
)
async def test_bad_search_query_is_422(client: Client, params: dict[str, str]) -> None:
    response = await client.get("/api/search", params=params, headers=user("bob", "space-a"))
    assert await error_of(response) == (422, "validation_error")


async def test_stop_words_only_find_nothing(client: Client, repo: Store) -> None:
    await _session(repo, "space-a", "A", ["the and of"])
    assert (await _search(client, user("bob", "space-a"), q="the"))["items"] == []
