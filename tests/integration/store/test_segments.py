"""Final segments: idempotent upsert, transcript pages, full-text search (Russian + English)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from store.records import FinalSegment, SegmentCursor, UpsertOutcome, WordTiming
from store.stores import Store

T0 = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)


async def _session(repo: Store) -> int:
    s = await repo.sessions.create_session(space_id="sp", created_by="u", now=T0)
    await repo.sessions.participant_joined(s.id, "alice", name="Alice", now=T0)
    return s.id


def _seg(session_id: int, n: int, text: str, *, track: str = "TR_a", **kw: object) -> FinalSegment:
    return FinalSegment(
        session_id=session_id,
        utterance_id=f"{track}-{n}",
        track_sid=track,
        text=text,
        start_ms=n * 1000,
        end_ms=n * 1000 + 900,
        participant_identity="alice",
        **kw,  # type: ignore[arg-type]
    )


async def test_upsert_is_idempotent(repo: Store) -> None:
    sid = await _session(repo)
    words = (WordTiming("Привет", 0, 400, 0.93), WordTiming("всем", 400, 900, None))
    seg = _seg(sid, 0, "Привет всем", words=words, confidence=0.9, model="base", language="ru")
    assert await repo.transcripts.upsert_final_segment(seg) is UpsertOutcome.INSERTED
    assert await repo.transcripts.upsert_final_segment(seg) is UpsertOutcome.UNCHANGED  # replay
    assert await repo.transcripts.upsert_final_segments([seg, seg]) == [UpsertOutcome.UNCHANGED] * 2

    page = await repo.transcripts.transcript_page(sid, include_words=True)
    (stored,) = page.items
    assert stored.text == "Привет всем" and stored.words == words
    assert stored.participant_identity == "alice" and stored.participant_name == "Alice"
    assert stored.confidence == pytest.approx(0.9) and stored.language == "ru"

    # same utterance, same track, new content (a corrected decode): replaced in place
    fixed = _seg(sid, 0, "Привет всем!", words=words, confidence=0.95, model="base")
    assert await repo.transcripts.upsert_final_segment(fixed) is UpsertOutcome.UPDATED
    (updated,) = (await repo.transcripts.transcript_page(sid)).items
    assert updated.id == stored.id and updated.text == "Привет всем!"

    # another track claiming the same utterance id does not overwrite it
    clash = FinalSegment(sid, "TR_a-0", "TR_b", "чужой текст", 0, 10)
    assert await repo.transcripts.upsert_final_segment(clash) is UpsertOutcome.CONFLICT
    assert (await repo.transcripts.transcript_page(sid)).items[0].text == "Привет всем!"
    assert await repo.transcripts.count_segments(sid) == 1


async def test_batch_upsert_outcomes_in_order(repo: Store) -> None:
    sid = await _session(repo)
    await repo.transcripts.upsert_final_segment(_seg(sid, 1, "one"))
    batch = [
        _seg(sid, 1, "one"),  # unchanged
        _seg(sid, 2, "two"),  # new
        _seg(sid, 3, "three draft"),  # new; repeated below, the last one wins
        _seg(sid, 3, "three"),
        FinalSegment(10**9, "x", "TR_z", "gone", 0, 1),  # session deleted meanwhile
    ]
    outcomes = await repo.transcripts.upsert_final_segments(batch)
    assert outcomes == [
        UpsertOutcome.UNCHANGED,
        UpsertOutcome.INSERTED,
        UpsertOutcome.INSERTED,
        UpsertOutcome.INSERTED,
        UpsertOutcome.SESSION_MISSING,
    ]
    assert [s.text for s in (await repo.transcripts.transcript_page(sid)).items] == [
        "one",
        "two",
        "three",
    ]


async def test_large_replay_batch(repo: Store) -> None:
    """A reconnecting bot flushes its queue: more rows than one INSERT chunk, then again."""
    sid = await _session(repo)
    batch = [_seg(sid, n, f"utterance {n}") for n in range(1200)]
    assert set(await repo.transcripts.upsert_final_segments(batch)) == {UpsertOutcome.INSERTED}
    assert set(await repo.transcripts.upsert_final_segments(batch)) == {UpsertOutcome.UNCHANGED}
    assert await repo.transcripts.count_segments(sid) == 1200


async def test_unknown_participant_and_late_link(repo: Store) -> None:
    sid = await _session(repo)
    seg = FinalSegment(sid, "u1", "TR_c", "who?", 0, 5, participant_identity="carol")
    assert await repo.transcripts.upsert_final_segment(seg) is UpsertOutcome.INSERTED
    assert (await repo.transcripts.transcript_page(sid)).items[0].participant_id is None
    await repo.sessions.participant_joined(sid, "carol", name="Carol")
    assert await repo.transcripts.upsert_final_segment(seg) is UpsertOutcome.UPDATED  # now linkable
    assert (await repo.transcripts.transcript_page(sid)).items[0].participant_name == "Carol"
    # a re-send that does not know the participant keeps the link
    anon = FinalSegment(sid, "u1", "TR_c", "who?", 0, 5)
    assert await repo.transcripts.upsert_final_segment(anon) is UpsertOutcome.UNCHANGED


async def test_invalid_timeline_rejected(repo: Store) -> None:
    sid = await _session(repo)
    with pytest.raises(ValueError, match="timeline"):
        await repo.transcripts.upsert_final_segment(FinalSegment(sid, "u", "TR", "x", 10, 5))


async def test_keyset_pages_follow_the_timeline(repo: Store) -> None:
    sid = await _session(repo)
    # two tracks interleaved, inserted out of order, with a tie on start_ms
    segs = [_seg(sid, n, f"a{n}") for n in (4, 0, 2)] + [
        _seg(sid, n, f"b{n}", track="TR_b") for n in (1, 3, 2)
    ]
    await repo.transcripts.upsert_final_segments(segs)
    seen: list[str] = []
    cursor: SegmentCursor | None = None
    while True:
        page = await repo.transcripts.transcript_page(sid, after=cursor, limit=4)
        seen += [s.text for s in page.items]
        if page.next_cursor is None:
            break
        cursor = SegmentCursor.decode(page.next_cursor.encode())
    assert seen == ["a0", "b1", "a2", "b2", "b3", "a4"]
    assert [s.text async for s in repo.transcripts.iter_segments(sid, batch_size=2)] == seen


def test_cursor_encoding_rejects_garbage() -> None:
    assert SegmentCursor.decode(SegmentCursor(12, 34).encode()) == SegmentCursor(12, 34)
    for bad in ("", "!!!", "MTI", "LTE6Mg"):  # "12" / "-1:2"
        with pytest.raises(ValueError):
            SegmentCursor.decode(bad)


TEXTS = [
    ("ru", "Встреча по планированию начнётся в десять"),
    ("ru", "Мы обсудили встречи с клиентами и бюджет"),
    ("ru", "ПРИВЕТ всем участникам"),
    ("en", "The meetings were scheduled for Monday"),
    ("en", "Our budget meeting is tomorrow"),
    ("en", "Transcription quality improved by 50%"),
    ("ru", "Ёжик в тумане и ёлка"),
    ("en", "under_score and 100% sure"),
    ("ru", "Транскрипция работает отлично"),
    ("de", "Die Besprechungen waren lang"),
]


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        # Russian morphology: any form finds the others (russian configuration)
        ("встреча", {0, 1}),
        ("встречами", {0, 1}),
        ("планирование", {0}),
        # English stemming (english configuration)
        ("meeting", {3, 4}),
        ("schedule", {3}),
        # case-insensitive Cyrillic, incl. Ё
        ("привет", {2}),
        ("ЁЖИК", {6}),
        ("ТРАНСКРИПЦИЯ", {8}),
        # other languages: the simple configuration, whole words without stemming
        ("besprechungen", {9}),
        ("besprechung", set()),
        # no substring search any more (it cannot use the index): partial words and English
        # stop words find nothing
        ("транскри", set()),
        ("Transcri", set()),
        ("the", set()),
        # websearch syntax: phrases and exclusion
        ('"budget meeting"', {4}),
        ("meeting -monday", {4}),
        # punctuation is not syntax
        ("50%", {5}),
        ("100%", {7}),
        ("%", set()),
        ("nothing-like-this", set()),
    ],
)
async def test_search_is_language_aware(repo: Store, q: str, expected: set[int]) -> None:
    sid = await _session(repo)
    await repo.transcripts.upsert_final_segments(
        [_seg(sid, n, text, language=lang) for n, (lang, text) in enumerate(TEXTS)]
    )
    other = await repo.sessions.create_session(space_id="sp", created_by="u")
    await repo.transcripts.upsert_final_segment(
        FinalSegment(other.id, "x", "TR", TEXTS[0][1], 0, 1, language="ru")
    )
    page = await repo.transcripts.transcript_page(sid, q=q)
    assert {[t for _, t in TEXTS].index(s.text) for s in page.items} == expected
    assert await repo.transcripts.count_segments(sid, q=q) == len(expected)


async def test_session_language_picks_the_search_configuration(repo: Store) -> None:
    """An English session's segments are stemmed as English even when Whisper tagged one as
    another language; a session without a language uses each segment's own."""
    english = await repo.sessions.create_session(space_id="sp", created_by="u", language="en")
    auto = await repo.sessions.create_session(space_id="sp", created_by="u")
    await repo.transcripts.upsert_final_segments(
        [
            FinalSegment(english.id, "a", "TR", "The meetings were long", 0, 1, language="nl"),
            FinalSegment(auto.id, "b", "TR", "The meetings were long", 0, 1, language="nl"),
        ]
    )
    assert len((await repo.transcripts.transcript_page(english.id, q="meeting")).items) == 1
    # simple configuration: no stemming, so only the exact word form
    assert (await repo.transcripts.transcript_page(auto.id, q="meeting")).items == []
    assert len((await repo.transcripts.transcript_page(auto.id, q="meetings")).items) == 1


async def test_a_language_set_later_reindexes_the_stored_segments(repo: Store) -> None:
    """Setting (or clearing) a session's language after finals are stored re-indexes them:
    search follows the language the session has now."""
    session = await repo.sessions.create_session(space_id="sp", created_by="u")
    await repo.transcripts.upsert_final_segments(
        [
            FinalSegment(session.id, "a", "TR", "The meetings were long", 0, 1, language="nl"),
            FinalSegment(session.id, "b", "TR", "Meetings again", 2, 3, language=None),
        ]
    )
    assert (await repo.transcripts.transcript_page(session.id, q="meeting")).items == []
    await repo.sessions.update_session(session.id, language="en")
    assert len((await repo.transcripts.transcript_page(session.id, q="meeting")).items) == 2
    await repo.sessions.update_session(session.id, language=None)  # back to each segment's own
    assert (await repo.transcripts.transcript_page(session.id, q="meeting")).items == []


async def test_blank_query_means_no_filter(repo: Store) -> None:
    sid = await _session(repo)
    await repo.transcripts.upsert_final_segments(
        [_seg(sid, n, t) for n, (_, t) in enumerate(TEXTS[:3])]
    )
    assert len((await repo.transcripts.transcript_page(sid, q="   ")).items) == 3


async def test_finals_count_as_activity(repo: Store) -> None:
    sid = await _session(repo)
    later = T0 + timedelta(minutes=10)
    await repo.transcripts.upsert_final_segment(_seg(sid, 0, "hi"), now=later)
    s = await repo.sessions.get_session_by_id(sid)
    assert s is not None and s.last_activity_at == later
