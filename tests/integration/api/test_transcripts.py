"""Transcript pages, search and downloads parsed back by real SRT/WebVTT/DOCX/CSV parsers."""

from __future__ import annotations

import datetime as dt
import html
import io
import json

import docx
import pytest
import srt
import webvtt

from store.records import SessionRecord, TranscriptPage
from store.stores import Store
from tests.integration.api.conftest import Client
from tests.integration.api.support import seed_transcript, user

LINES = [
    ("ivan", "Иван Петров", 0, 2_500, "Добрый день, коллеги! Начинаем планёрку."),
    ("alice", "Alice", 2_600, 5_000, "Hello everyone, the budget report is ready."),
    ("ivan", "Иван Петров", 5_100, 9_000, "Отлично. Бюджет утверждён, ёлки-палки & <всё>."),
    ("alice", "Alice", 3_661_000, 3_662_500, "Meeting notes\nwill follow --> soon"),
]


@pytest.fixture
async def session(repo: Store) -> SessionRecord:
    record = await repo.sessions.create_session(
        space_id="space-a", created_by="ivan", title="Планёрка"
    )
    await seed_transcript(repo, record, LINES)
    return record


async def test_pages_in_timeline_order(client: Client, session: SessionRecord) -> None:
    seen = []
    cursor = None
    while True:
        params = {"limit": "3"} | ({"cursor": cursor} if cursor else {})
        response = await client.get(
            f"/api/sessions/{session.slug}/transcript", params=params, headers=user("x")
        )
        assert response.status == 200
        page = await response.json()
        seen += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [s["text"] for s in seen] == [line[4] for line in LINES]
    first = seen[0]
    assert (first["speaker"], first["speaker_identity"], first["start_ms"], first["end_ms"]) == (
        "Иван Петров",
        "ivan",
        0,
        2_500,
    )


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("бюджет", [2]),  # Russian stemming: "Бюджет" (and not the English "budget")
        ("планёрка", [0]),  # stem matches "планёрку"
        ("budget reports", [1]),  # English stemming, all words
        ("ИВАН", []),  # speaker names are not text
        ("ёлки", [2]),
        ("nothing-like-this", []),
    ],
)
async def test_full_text_search(
    client: Client, session: SessionRecord, q: str, expected: list[int]
) -> None:
    response = await client.get(
        f"/api/sessions/{session.slug}/transcript", params={"q": q}, headers=user("x")
    )
    assert response.status == 200
    texts = [s["text"] for s in (await response.json())["items"]]
    assert texts == [LINES[i][4] for i in expected]


@pytest.mark.parametrize(
    "params",
    [{"cursor": "%%%"}, {"cursor": "MTox"[:3]}, {"limit": "501"}, {"format": "pdf"}, {"q": ""}],
)
async def test_bad_transcript_query_is_422(
    client: Client, session: SessionRecord, params: dict[str, str]
) -> None:
    response = await client.get(
        f"/api/sessions/{session.slug}/transcript", params=params, headers=user("x")
    )
    assert response.status == 422
    assert (await response.json())["error"]["code"] == "validation_error"


async def _download(client: Client, session: SessionRecord, fmt: str) -> tuple[bytes, str]:
    response = await client.get(
        f"/api/sessions/{session.slug}/transcript", params={"format": fmt}, headers=user("x")
    )
    assert response.status == 200
    disposition = response.headers["Content-Disposition"]
    assert disposition == f'attachment; filename="{session.slug}.{fmt}"'
    return await response.read(), response.headers["Content-Type"]


async def test_srt_download(client: Client, session: SessionRecord) -> None:
    body, content_type = await _download(client, session, "srt")
    assert content_type.startswith("application/x-subrip") and "utf-8" in content_type
    subs = list(srt.parse(body.decode("utf-8")))
    assert len(subs) == len(LINES)
    assert subs[0].content == "Иван Петров: Добрый день, коллеги! Начинаем планёрку."
    assert subs[0].start == dt.timedelta(0) and subs[0].end == dt.timedelta(seconds=2.5)
    assert subs[3].start == dt.timedelta(hours=1, seconds=61)
    assert subs[3].content == "Alice: Meeting notes will follow -> soon"


async def test_vtt_download(client: Client, session: SessionRecord) -> None:
    body, content_type = await _download(client, session, "vtt")
    assert content_type.startswith("text/vtt")
    captions = webvtt.from_buffer(io.StringIO(body.decode("utf-8"))).captions
    assert [c.voice for c in captions] == ["Иван Петров", "Alice", "Иван Петров", "Alice"]
    assert html.unescape(captions[2].text) == LINES[2][4]
    assert (captions[1].start, captions[1].end) == ("00:00:02.600", "00:00:05.000")


async def test_txt_docx_json_downloads(client: Client, session: SessionRecord) -> None:
    body, _ = await _download(client, session, "txt")
    lines = body.decode("utf-8").splitlines()
    assert lines[0] == "[00:00:00] Иван Петров: Добрый день, коллеги! Начинаем планёрку."
    assert lines[3].startswith("[01:01:01] Alice: ")

    body, content_type = await _download(client, session, "docx")
    assert content_type.startswith("application/vnd.openxmlformats")
    document = docx.Document(io.BytesIO(body))
    paragraphs = [p.text for p in document.paragraphs]
    assert paragraphs[0] == "Планёрка"
    assert paragraphs[1] == "[00:00:00] Иван Петров: Добрый день, коллеги! Начинаем планёрку."
    assert len(paragraphs) == 1 + len(LINES)

    body, _ = await _download(client, session, "json")
    data = json.loads(body)
    assert data["session"] == {
        "slug": session.slug,
        "title": "Планёрка",
        "space_id": "space-a",
        "transcript_version": "live",
    }
    assert [s["text"] for s in data["segments"]] == [line[4] for line in LINES]


async def test_large_export_streams_across_batches(
    client: Client, repo: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    from api.routes import transcripts

    monkeypatch.setattr(transcripts, "EXPORT_BATCH", 7)
    record = await repo.sessions.create_session(space_id="space-a", created_by="ivan")
    lines = [("p", "Пётр", i * 1000, i * 1000 + 900, f"Фраза номер {i}") for i in range(30)]
    await seed_transcript(repo, record, lines)
    body, _ = await _download(client, record, "srt")
    subs = list(srt.parse(body.decode()))
    assert [s.index for s in subs] == list(range(1, 31))
    assert subs[29].content == "Пётр: Фраза номер 29"
    data = json.loads((await _download(client, record, "json"))[0])
    assert len(data["segments"]) == 30
    captions = webvtt.from_buffer(io.StringIO((await _download(client, record, "vtt"))[0].decode()))
    assert len(captions.captions) == 30


async def test_empty_transcript_downloads(client: Client, repo: Store) -> None:
    record = await repo.sessions.create_session(space_id="space-a", created_by="ivan")
    assert (await _download(client, record, "srt"))[0] == b""
    assert json.loads((await _download(client, record, "json"))[0])["segments"] == []
    page = await (
        await client.get(f"/api/sessions/{record.slug}/transcript", headers=user("x"))
    ).json()
    assert page == {"transcript_version": "live", "items": [], "next_cursor": None}


async def test_transcript_of_another_space_is_404(client: Client, session: SessionRecord) -> None:
    for params in ({}, {"format": "srt"}):
        response = await client.get(
            f"/api/sessions/{session.slug}/transcript",
            params=params,
            headers=user("x", space="space-b"),
        )
        assert response.status == 404


async def test_session_page_is_the_session_and_its_transcript_page(
    repo: Store, session: SessionRecord
) -> None:
    """The API's hot-path read (one statement by slug) returns the session and the same page as
    ``transcript_page`` of that session, page after page."""
    after = None
    for limit in (1, 2, 5):
        found = await repo.transcripts.session_page(session.slug, after=after, limit=limit)
        assert found is not None
        record, page = found
        assert record == await repo.sessions.get_session(session.slug)
        assert page == await repo.transcripts.transcript_page(session.id, after=after, limit=limit)
        after = page.next_cursor
    assert await repo.transcripts.session_page("no-such-slug", after=None, limit=10) is None
    empty = await repo.sessions.create_session(space_id="space-a", created_by="x")
    found = await repo.transcripts.session_page(empty.slug, after=None, limit=10)
    assert found is not None and found[1] == TranscriptPage(items=[], next_cursor=None)


async def test_missing_session_transcript_is_404(client: Client) -> None:
    for params in ({}, {"cursor": "MTox"}, {"q": "x"}, {"format": "txt"}):
        response = await client.get(
            "/api/sessions/nosuchsession/transcript", params=params, headers=user("x")
        )
        assert response.status == 404, params
