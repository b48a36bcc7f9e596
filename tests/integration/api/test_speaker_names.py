"""Speaker labels of diarized tracks: naming them (``/speakers``), the names in pages, search and
every download, the transcript version a reader gets, permissions and the space boundary."""

from __future__ import annotations

import io
import json
from typing import Any

import docx
import pytest
import srt
import webvtt
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from store.enums import TranscriptVersion
from store.models import Segment, Session
from store.records import FinalSegment, SessionRecord
from store.stores import Store
from tests.integration.api.conftest import Client, MakeClient
from tests.integration.api.support import admin, error_of, user

# (utterance, identity, live in-track label, start_ms, text); "room" is a shared microphone
LINES = [
    ("u0", "room", "Speaker 1", 0, "Welcome to the budget review."),
    ("u1", "room", "Speaker 2", 2_000, "Thanks, the forecast is ready."),
    ("u2", "alice", None, 4_000, "I have one question about travel."),
    ("u3", "room", "Speaker 2", 6_000, "Travel costs went down."),
]
NAMES = {"room": "Room 4", "alice": "Alice"}


@pytest.fixture
async def client(make_client: MakeClient) -> Client:
    # a test downloads every format twice: more than the default export rate allows
    return await make_client(api_rate_export_burst=100)


@pytest.fixture
async def session(repo: Store) -> SessionRecord:
    record = await repo.sessions.create_session(space_id="space-a", created_by="ivan", title="t")
    for identity, name in NAMES.items():
        await repo.sessions.participant_joined(record.id, identity, name=name, user_id=identity)
    await repo.transcripts.upsert_final_segments(
        [
            FinalSegment(
                session_id=record.id,
                utterance_id=utterance,
                track_sid=f"TR_{identity}",
                text=text,
                start_ms=start,
                end_ms=start + 1_500,
                participant_identity=identity,
                speaker_label=NAMES[identity] + (f" · {label}" if label else ""),
                speaker=label,
                language="en",
            )
            for utterance, identity, label, start, text in LINES
        ]
    )
    return record


async def _finalize(
    sessionmaker: async_sessionmaker[AsyncSession], session_id: int, finals: dict[str, str]
) -> None:
    """What the after-meeting pass leaves: final labels by utterance, the version final."""
    async with sessionmaker.begin() as s:
        for utterance, label in finals.items():
            await s.execute(
                update(Segment)
                .where(Segment.session_id == session_id, Segment.utterance_id == utterance)
                .values(final_speaker=label)
            )
        await s.execute(
            update(Session)
            .where(Session.id == session_id)
            .values(transcript_version=TranscriptVersion.FINAL)
        )


async def _name(
    client: Client, slug: str, speaker: str, name: str | None, who: dict[str, str]
) -> tuple[int, dict[str, Any]]:
    response = await client.put(
        f"/api/sessions/{slug}/speakers",
        json={"participant_identity": "room", "speaker": speaker, "name": name},
        headers=who,
    )
    return response.status, await response.json()


async def _downloads(client: Client, slug: str, **params: str) -> dict[str, list[str]]:
    """The speaker of each segment, as every download format shows it."""
    base = f"/api/sessions/{slug}/transcript"
    out: dict[str, list[str]] = {}

    async def get(fmt: str) -> bytes:
        response = await client.get(base, params={"format": fmt, **params}, headers=user("x"))
        assert response.status == 200, await response.text()
        assert response.headers["X-Transcript-Version"] == params.get("version", "live")
        return await response.read()

    out["srt"] = [
        cue.content.split(": ")[0] for cue in srt.parse((await get("srt")).decode("utf-8"))
    ]
    out["vtt"] = [
        cue.voice or "" for cue in webvtt.from_buffer(io.StringIO((await get("vtt")).decode()))
    ]
    out["txt"] = [
        line.split("] ", 1)[1].split(": ")[0] for line in (await get("txt")).decode().splitlines()
    ]
    document = docx.Document(io.BytesIO(await get("docx")))
    out["docx"] = [p.runs[1].text.removesuffix(": ") for p in document.paragraphs[1:]]
    body = json.loads(await get("json"))
    assert body["session"]["transcript_version"] == params.get("version", "live")
    out["json"] = [segment["speaker"] for segment in body["segments"]]
    return out


async def test_a_named_label_shows_in_pages_search_and_every_download(
    client: Client, session: SessionRecord
) -> None:
    status, named = await _name(client, session.slug, "Speaker 2", "Maria", user("ivan"))
    assert status == 200, named
    assert named == {
        "participant_identity": "room",
        "participant_name": "Room 4",
        "speaker": "Speaker 2",
        "segments": 2,
        "name": "Maria",
        "display": "Maria",
    }
    shown = ["Room 4 · Speaker 1", "Maria", "Alice", "Maria"]
    response = await client.get(f"/api/sessions/{session.slug}/transcript", headers=user("x"))
    page = await response.json()
    assert response.headers["X-Transcript-Version"] == page["transcript_version"] == "live"
    assert [item["speaker"] for item in page["items"]] == shown
    assert [item["speaker_label"] for item in page["items"]] == [
        "Speaker 1",
        "Speaker 2",
        None,
        "Speaker 2",
    ]
    assert await _downloads(client, session.slug) == dict.fromkeys(
        ("srt", "vtt", "txt", "docx", "json"), shown
    )
    found = await (
        await client.get("/api/search", params={"q": "travel"}, headers=user("x"))
    ).json()
    assert sorted(hit["speaker"] for hit in found["items"]) == ["Alice", "Maria"]
    listed = await (
        await client.get(f"/api/sessions/{session.slug}/speakers", headers=user("x"))
    ).json()
    assert listed["transcript_version"] == "live"
    assert [(s["speaker"], s["segments"], s["name"], s["display"]) for s in listed["items"]] == [
        ("Speaker 1", 1, None, "Room 4 · Speaker 1"),
        ("Speaker 2", 2, "Maria", "Maria"),
    ]

    # renamed again, then the name removed (blank and null both remove)
    assert (await _name(client, session.slug, "Speaker 2", "Мария", user("room")))[0] == 200
    page = await (
        await client.get(f"/api/sessions/{session.slug}/transcript", headers=user("x"))
    ).json()
    assert page["items"][1]["speaker"] == "Мария"
    for removal in ("  ", None):
        status, out = await _name(client, session.slug, "Speaker 2", removal, user("ivan"))
        assert (status, out["name"], out["display"]) == (200, None, "Room 4 · Speaker 2")
    page = await (
        await client.get(f"/api/sessions/{session.slug}/transcript", headers=user("x"))
    ).json()
    assert page["items"][1]["speaker"] == "Room 4 · Speaker 2"


async def test_the_reader_gets_the_sessions_version_or_the_one_asked_for(
    client: Client, session: SessionRecord, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    base = f"/api/sessions/{session.slug}/transcript"
    # no final version yet: asking for it is a 409, for every kind of read
    for params in ({"version": "final"}, {"version": "final", "format": "srt"}):
        response = await client.get(base, params=params, headers=user("x"))
        assert await error_of(response) == (409, "transcript_not_final")
    await _name(client, session.slug, "Speaker 2", "Maria", user("ivan"))
    # the pass found u1 was Speaker 1 (live got it wrong) and kept the rest
    await _finalize(
        sessionmaker, session.id, {"u0": "Speaker 1", "u1": "Speaker 1", "u3": "Speaker 2"}
    )

    final = ["Room 4 · Speaker 1", "Room 4 · Speaker 1", "Alice", "Maria"]
    live = ["Room 4 · Speaker 1", "Maria", "Alice", "Maria"]
    for params, version, shown in (
        ({}, "final", final),
        ({"version": "final"}, "final", final),
        ({"version": "live"}, "live", live),
    ):
        response = await client.get(base, params=params, headers=user("x"))
        page = await response.json()
        assert response.headers["X-Transcript-Version"] == page["transcript_version"] == version
        assert [item["speaker"] for item in page["items"]] == shown
    assert await _downloads(client, session.slug, version="final") == dict.fromkeys(
        ("srt", "vtt", "txt", "docx", "json"), final
    )
    assert (await _downloads(client, session.slug, version="live"))["srt"] == live
    # search shows the session's version
    found = await (
        await client.get("/api/search", params={"q": "forecast"}, headers=user("x"))
    ).json()
    assert [hit["speaker"] for hit in found["items"]] == ["Room 4 · Speaker 1"]
    listed = await (
        await client.get(f"/api/sessions/{session.slug}/speakers", headers=user("x"))
    ).json()
    assert listed["transcript_version"] == "final"
    assert [(s["speaker"], s["segments"]) for s in listed["items"]] == [
        ("Speaker 1", 2),
        ("Speaker 2", 1),
    ]


async def test_who_may_name_a_label_and_the_space_boundary(
    client: Client, session: SessionRecord
) -> None:
    slug = session.slug
    # a member of the space who is not in the session: may read, may not name
    assert (await client.get(f"/api/sessions/{slug}/speakers", headers=user("x"))).status == 200
    status, out = await _name(client, slug, "Speaker 1", "Bob", user("stranger"))
    assert (status, out["error"]["code"]) == (403, "forbidden")
    # another space's credentials, even the creator's id and an admin: the session is not there
    for other in (user("ivan", space="space-b"), admin("space-b")):
        response = await client.get(f"/api/sessions/{slug}/speakers", headers=other)
        assert await error_of(response) == (404, "not_found")
        response = await client.put(
            f"/api/sessions/{slug}/speakers",
            json={"participant_identity": "room", "speaker": "Speaker 1", "name": "Bob"},
            headers=other,
        )
        assert await error_of(response) == (404, "not_found")
    # this space's admin, a participant and the creator may
    for who in (admin("space-a"), user("alice"), user("ivan")):
        assert (await _name(client, slug, "Speaker 1", "Bob", who))[0] == 200
    # a label or participant the session does not have
    for identity, speaker in (("room", "Speaker 9"), ("alice", "Speaker 1"), ("nobody", "S")):
        response = await client.put(
            f"/api/sessions/{slug}/speakers",
            json={"participant_identity": identity, "speaker": speaker, "name": "X"},
            headers=user("ivan"),
        )
        assert await error_of(response) == (404, "not_found")
    # bad bodies
    for body in (
        {"participant_identity": "room", "speaker": "Speaker 1"},  # name is required
        {"participant_identity": "room", "speaker": "x" * 33, "name": "X"},
        {"participant_identity": "room", "speaker": "Speaker 1", "name": "X", "extra": 1},
        {"participant_identity": "room", "speaker": "Speaker 1", "name": "a\x00b"},
    ):
        response = await client.put(
            f"/api/sessions/{slug}/speakers", json=body, headers=user("ivan")
        )
        assert await error_of(response) == (422, "validation_error")
