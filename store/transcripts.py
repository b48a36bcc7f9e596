"""Transcripts: final segments written by the bot, pages and search for the API, and the
whole transcript for exports.

* **Final segments** are upserted on ``(session_id, utterance_id)``. A re-sent final of the same
  utterance (same track) replaces the stored one when anything differs (a retry after an
  ambiguous failure, or a corrected re-decode) and is a no-op when identical; an utterance id
  already used by another track keeps the first row and reports ``CONFLICT``.
* **Corrections**: :meth:`TranscriptStore.correct_segment` replaces a final's text, keeping
  the first decoded text in ``original_text`` with who corrected it and when; pages, search
  (the generated ``search_vector`` follows ``text``) and exports read the corrected text, and a
  re-sent final of that utterance no longer overwrites it.
* **Search** is full-text only and always served by the GIN index on ``search_vector``. Each
  segment is stored with a text search configuration (``search_config``): ``english`` or
  ``russian`` when the session's language (else the segment's detected language) is English or
  Russian, ``simple`` otherwise. A query ``q`` becomes one ``websearch_to_tsquery`` per
  configuration ("quoted phrases", ``or``, ``-exclusion``) and a segment matches the query of its
  own configuration: three bitmap scans of the one index, OR-ed. The former ``ILIKE '%q%'`` branch
  (partial words) read every row of the table: 514 ms for one non-matching query on a million
  segments, 11 s for 40 at once (issue 15); it is gone, so a partial word no longer matches.
  :meth:`TranscriptStore.search_space` searches every session of a space, ranked by
  ``ts_rank_cd`` with ``ts_headline`` snippets, in bounded-offset pages.
* **Pages** without search are the API's hottest read, served from statements built once and run
  on one pooled connection without a transaction. :meth:`TranscriptStore.session_page` reads the
  session by slug (for the space check) with a LATERAL page of its segments in ONE statement.
  Measured on the benchmark data, the former ``get_session_with_job`` + ``transcript_page``
  cost 1.35 ms of CPU per page (two ORM transactions: BEGIN/ping/ROLLBACK + BEGIN/query/COMMIT
  twice, statements rebuilt per call); the one statement costs 0.45 ms, which is what lets one
  API process serve >= 500 pages/s.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any, Final

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    bindparam,
    case,
    delete,
    func,
    literal,
    literal_column,
    or_,
    select,
    true,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession

from store.base import AnySelect, RowMapper, StoreBase, labelled, sql_time, touch_sessions
from store.enums import TranscriptVersion
from store.models import (
    SEARCH_CONFIGS,
    Participant,
    Segment,
    Session,
    SpeakerName,
    search_config,
)
from store.records import (
    FinalSegment,
    SearchHit,
    SearchPage,
    SegmentCursor,
    SegmentRecord,
    SessionRecord,
    SpeakerRecord,
    TranscriptPage,
    UpsertOutcome,
    WordTiming,
)
from store.sessions import SESSION_COLUMNS

__all__ = [
    "HIGHLIGHT_START",
    "HIGHLIGHT_STOP",
    "TranscriptStore",
    "search_config",
    "search_statement",
]

_UPSERT_CHUNK: Final = 500

# ts_headline marks matches with these control characters (removed from the text first, so a
# marker in the output is always one of ours); the API turns them into <mark> tags
HIGHLIGHT_START: Final = "\x02"
HIGHLIGHT_STOP: Final = "\x03"
_HEADLINE_OPTIONS: Final = (
    f'StartSel="{HIGHLIGHT_START}", StopSel="{HIGHLIGHT_STOP}", '
    'MaxWords=30, MinWords=12, MaxFragments=2, FragmentDelimiter=" ... "'
)


def _regconfig(config: str) -> ColumnElement[Any]:
    assert config in SEARCH_CONFIGS
    return literal_column(f"'{config}'::regconfig")


def _renamed(label: Any) -> Any:
    """The name the host app gave the segment's in-track ``label`` (a primary-key lookup in
    ``speaker_names``), NULL when not renamed."""
    return (
        select(SpeakerName.name)
        .where(SpeakerName.participant_id == Segment.participant_id, SpeakerName.speaker == label)
        .scalar_subquery()
    )


# a segment's columns (with its participant's), as SegmentRecord's fields
_SEGMENT_FIELDS: Final[dict[str, Any]] = {
    "id": Segment.id,
    "session_id": Segment.session_id,
    "utterance_id": Segment.utterance_id,
    "participant_id": Segment.participant_id,
    "participant_identity": Participant.identity,
    "participant_name": Participant.name,
    "track_sid": Segment.track_sid,
    "speaker_label": Segment.speaker_label,
    "text": Segment.text,
    "language": Segment.language,
    "start_ms": Segment.start_ms,
    "end_ms": Segment.end_ms,
    "started_at": Segment.started_at,
    "ended_at": Segment.ended_at,
    "confidence": Segment.confidence,
    "model": Segment.model,
    "original_text": Segment.original_text,
    "corrected_by": Segment.corrected_by,
    "corrected_at": Segment.corrected_at,
    "speaker": Segment.speaker,
    "final_speaker": Segment.final_speaker,
    "speaker_name": _renamed(Segment.speaker),
    "final_speaker_name": _renamed(Segment.final_speaker),
}
_SEGMENT_COLUMNS: Final = labelled(_SEGMENT_FIELDS)
_segment_of = RowMapper(SegmentRecord)
_paged_segment = RowMapper(SegmentRecord, "segment_")
_session = RowMapper(SessionRecord)


def _page_statement(*, after: bool) -> Select[Any]:
    """A page of one session's segments (``:session_id``, ``:limit``, optionally after
    ``(:after_start_ms, :after_id)``), in timeline order."""
    stmt = (
        select(*_SEGMENT_COLUMNS)
        .select_from(Segment)
        .outerjoin(Participant, Participant.id == Segment.participant_id)
        .where(Segment.session_id == bindparam("session_id"))
    )
    if after:
        stmt = stmt.where(
            tuple_(Segment.start_ms, Segment.id)
            > tuple_(bindparam("after_start_ms"), bindparam("after_id"))
        )
    return stmt.order_by(Segment.start_ms, Segment.id).limit(bindparam("limit"))


def _session_page_statement(*, after: bool) -> Select[Any]:
    """The session named ``:slug`` with a LATERAL page of its segments (``segment_`` labels):
    one row per segment, or one row with NULL segment columns when the page is empty."""
    page = (
        select(*labelled(_SEGMENT_FIELDS, "segment_"))
        .select_from(Segment)
        .outerjoin(Participant, Participant.id == Segment.participant_id)
        .where(Segment.session_id == Session.id)
    )
    if after:
        page = page.where(
            tuple_(Segment.start_ms, Segment.id)
            > tuple_(bindparam("after_start_ms"), bindparam("after_id"))
        )
    lateral = page.order_by(Segment.start_ms, Segment.id).limit(bindparam("limit")).lateral("page")
    return (
        select(*SESSION_COLUMNS, lateral)
        .select_from(Session)
        .outerjoin(lateral, true())
        .where(Session.slug == bindparam("slug"))
    )


# built once: statements are compiled (and cached by SQLAlchemy) per object
_PAGE: Final = _page_statement(after=False)
_PAGE_AFTER: Final = _page_statement(after=True)
_SESSION_PAGE: Final = _session_page_statement(after=False)
_SESSION_PAGE_AFTER: Final = _session_page_statement(after=True)


def _page(items: list[SegmentRecord], rows: int, limit: int) -> TranscriptPage:
    cursor = None
    if rows > limit:
        cursor = SegmentCursor(items[-1].start_ms, items[-1].id)
    return TranscriptPage(items=items, next_cursor=cursor)


class TranscriptStore(StoreBase):
    """Segments: upserts (one transaction each), pages, search, counts and exports."""

    async def upsert_final_segment(
        self, segment: FinalSegment, *, now: datetime | None = None
    ) -> UpsertOutcome:
        return (await self.upsert_final_segments([segment], now=now))[0]

    async def upsert_final_segments(
        self, segments: Sequence[FinalSegment], *, now: datetime | None = None
    ) -> list[UpsertOutcome]:
        """Idempotently persist finals (the bot's live path and its replay of queued finals).

        Keyed on ``(session_id, utterance_id)``: new -> INSERTED; same utterance from the same
        track with different content -> UPDATED (text, words, timings, speaker replaced);
        identical -> UNCHANGED (nothing written); the id already taken by another track ->
        CONFLICT (first row kept); session deleted or purged by retention -> SESSION_MISSING
        (dropped). Returns one
        outcome per input, in order (repeated keys in one call: the last one wins)."""
        if not segments:
            return []
        for seg in segments:
            if seg.start_ms < 0 or seg.end_ms < seg.start_ms:
                raise ValueError("segment timeline must satisfy 0 <= start_ms <= end_ms")
        latest: dict[tuple[int, str], FinalSegment] = {}
        for seg in segments:
            latest[(seg.session_id, seg.utterance_id)] = seg
        outcomes: dict[tuple[int, str], UpsertOutcome] = {}
        async with self._tx() as s:
            session_ids = sorted({key[0] for key in latest})
            # KEY SHARE: a concurrent delete of the session waits for this transaction
            languages: dict[int, str | None] = {
                row.id: row.language
                for row in await s.execute(
                    select(Session.id, Session.language)
                    # a purged session (retention) takes no more text, like a deleted one
                    .where(Session.id.in_(session_ids), Session.transcript_purged_at.is_(None))
                    .with_for_update(key_share=True)
                )
            }
            alive = set(languages)
            pending = [seg for key, seg in latest.items() if key[0] in alive]
            for key in latest:
                if key[0] not in alive:
                    outcomes[key] = UpsertOutcome.SESSION_MISSING
            participant_ids = await self._participant_ids(s, pending)
            for start in range(0, len(pending), _UPSERT_CHUNK):
                chunk = pending[start : start + _UPSERT_CHUNK]
                outcomes.update(await self._upsert_chunk(s, chunk, participant_ids, languages, now))
            await touch_sessions(s, alive, now)
        return [outcomes[(seg.session_id, seg.utterance_id)] for seg in segments]

    @staticmethod
    async def _participant_ids(
        s: AsyncSession, segments: Sequence[FinalSegment]
    ) -> dict[tuple[int, str], int]:
        keys = {
            (seg.session_id, seg.participant_identity)
            for seg in segments
            if seg.participant_identity is not None
        }
        if not keys:
            return {}
        rows = await s.execute(
            select(Participant.session_id, Participant.identity, Participant.id).where(
                tuple_(Participant.session_id, Participant.identity).in_(sorted(keys))
            )
        )
        return {(r.session_id, r.identity): r.id for r in rows}

    @staticmethod
    async def _upsert_chunk(
        s: AsyncSession,
        chunk: Sequence[FinalSegment],
        participant_ids: dict[tuple[int, str], int],
        languages: dict[int, str | None],
        now: datetime | None,
    ) -> dict[tuple[int, str], UpsertOutcome]:
        ts = sql_time(now)
        rows = [
            {
                "session_id": seg.session_id,
                "participant_id": participant_ids.get((seg.session_id, seg.participant_identity))
                if seg.participant_identity is not None
                else None,
                "utterance_id": seg.utterance_id,
                "track_sid": seg.track_sid,
                "speaker_label": seg.speaker_label,
                "speaker": seg.speaker,
                "text": seg.text,
                "language": seg.language,
                "search_config": search_config(languages.get(seg.session_id), seg.language),
                "start_ms": seg.start_ms,
                "end_ms": seg.end_ms,
                "started_at": seg.started_at,
                "ended_at": seg.ended_at,
                "words": [_word_json(w) for w in seg.words] if seg.words else None,
                "confidence": seg.confidence,
                "model": seg.model,
                "created_at": ts,
                "updated_at": ts,
            }
            for seg in chunk
        ]
        insert_stmt = pg_insert(Segment).values(rows)
        ex = insert_stmt.excluded
        content = (
            "participant_id",
            "speaker_label",
            "speaker",
            "text",
            "language",
            "start_ms",
            "end_ms",
            "started_at",
            "ended_at",
            "words",
            "confidence",
            "model",
        )
        new: dict[str, Any] = {col: ex[col] for col in content}
        # a re-send without a known participant keeps the stored link
        new["participant_id"] = func.coalesce(ex.participant_id, Segment.participant_id)
        stmt: Any = insert_stmt.on_conflict_do_update(
            index_elements=[Segment.session_id, Segment.utterance_id],
            set_={**new, "search_config": ex.search_config, "updated_at": ex.updated_at},
            where=and_(
                Segment.track_sid == ex.track_sid,
                # a person's correction wins over a re-sent final (a spool replay)
                Segment.corrected_at.is_(None),
                tuple_(*(Segment.__table__.c[col] for col in content)).is_distinct_from(
                    tuple_(*(new[col] for col in content))
                ),
            ),
        ).returning(
            Segment.session_id,
            Segment.utterance_id,
            literal_column("(segments.xmax = 0)").label("inserted"),
        )
        result: dict[tuple[int, str], UpsertOutcome] = {}
        for row in await s.execute(stmt):
            result[(row.session_id, row.utterance_id)] = (
                UpsertOutcome.INSERTED if row.inserted else UpsertOutcome.UPDATED
            )
        untouched = [seg for seg in chunk if (seg.session_id, seg.utterance_id) not in result]
        if untouched:
            stored = {
                (r.session_id, r.utterance_id): r.track_sid
                for r in await s.execute(
                    select(Segment.session_id, Segment.utterance_id, Segment.track_sid).where(
                        tuple_(Segment.session_id, Segment.utterance_id).in_(
                            [(seg.session_id, seg.utterance_id) for seg in untouched]
                        )
                    )
                )
            }
            for seg in untouched:
                key = (seg.session_id, seg.utterance_id)
                same_track = stored.get(key) == seg.track_sid
                result[key] = UpsertOutcome.UNCHANGED if same_track else UpsertOutcome.CONFLICT
        return result

    async def correct_segment(
        self,
        session_id: int,
        segment_id: int,
        text: str,
        *,
        corrected_by: str,
        now: datetime | None = None,
    ) -> SegmentRecord | None:
        """Replace a final's text; the bot's text stays in ``original_text`` (a second correction
        keeps the first original). None if the session has no such segment."""
        ts = sql_time(now)
        stmt = (
            update(Segment)
            .where(Segment.session_id == session_id, Segment.id == segment_id)
            .values(
                text=text,
                original_text=func.coalesce(Segment.original_text, Segment.text),
                corrected_by=corrected_by,
                corrected_at=ts,
                updated_at=ts,
            )
            .returning(Segment.id)
        )
        async with self._tx() as s:
            found = (await s.execute(stmt)).scalar_one_or_none()
            if found is None:
                return None
            row = (
                await s.execute(
                    self._segment_select(session_id, q=None, include_words=False).where(
                        Segment.id == segment_id
                    )
                )
            ).one()
        return _segment_of(row)

    async def transcript_page(
        self,
        session_id: int,
        *,
        q: str | None = None,
        after: SegmentCursor | None = None,
        limit: int = 100,
        include_words: bool = False,
    ) -> TranscriptPage:
        """One page of a session's transcript in timeline order (``start_ms``, then id), keyset
        paginated: pass the returned ``next_cursor`` as ``after``.

        ``q`` filters by full-text search (see the module docstring: each segment matched with
        its own configuration, through the GIN index or the session's rows, whichever the
        planner finds cheaper). Without ``q`` and words, the page comes from a statement built
        once."""
        if limit < 1:
            raise ValueError("limit must be positive")
        if _search_condition(q) is None and not include_words:
            params: dict[str, Any] = {"session_id": session_id, "limit": limit + 1}
            stmt: Any = _PAGE
            if after is not None:
                stmt = _PAGE_AFTER
                params |= {"after_start_ms": after.start_ms, "after_id": after.id}
            async with self._read() as conn:
                rows = (await conn.execute(stmt, params)).all()
            return _page(_segment_of.many(rows[:limit]), len(rows), limit)
        stmt = self._segment_select(session_id, q=q, include_words=include_words)
        if after is not None:
            stmt = stmt.where(
                tuple_(Segment.start_ms, Segment.id) > tuple_(after.start_ms, after.id)
            )
        stmt = stmt.order_by(Segment.start_ms, Segment.id).limit(limit + 1)
        async with self._read() as conn:
            rows = (await conn.execute(stmt)).all()
        items = [_segment(row, include_words) for row in rows[:limit]]
        return _page(items, len(rows), limit)

    async def session_page(
        self, slug: str, *, after: SegmentCursor | None = None, limit: int = 100
    ) -> tuple[SessionRecord, TranscriptPage] | None:
        """The session named ``slug`` and a page of its transcript in timeline order, or None
        when there is no such session: :meth:`transcript_page` of the session found by slug, in
        one statement (the API's hot path, see the module docstring)."""
        if limit < 1:
            raise ValueError("limit must be positive")
        params: dict[str, Any] = {"slug": slug, "limit": limit + 1}
        stmt = _SESSION_PAGE
        if after is not None:
            stmt = _SESSION_PAGE_AFTER
            params |= {"after_start_ms": after.start_ms, "after_id": after.id}
        async with self._read() as conn:
            rows = (await conn.execute(stmt, params)).all()
        if not rows:
            return None
        items = [_paged_segment(row) for row in rows[:limit] if row.segment_id is not None]
        return _session(rows[0]), _page(items, len(rows), limit)

    async def count_segments(self, session_id: int, *, q: str | None = None) -> int:
        stmt = select(func.count()).select_from(Segment).where(Segment.session_id == session_id)
        condition = _search_condition(q)
        if condition is not None:
            stmt = stmt.where(condition)
        async with self._tx() as s:
            return int((await s.execute(stmt)).scalar_one())

    async def iter_segments(
        self, session_id: int, *, batch_size: int = 2000, include_words: bool = False
    ) -> AsyncIterator[SegmentRecord]:
        """All segments of a session in timeline order (exports), fetched in keyset batches."""
        cursor: SegmentCursor | None = None
        while True:
            page = await self.transcript_page(
                session_id, after=cursor, limit=batch_size, include_words=include_words
            )
            for item in page.items:
                yield item
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def search_space(
        self,
        space_id: str,
        q: str,
        *,
        limit: int = 20,
        offset: int = 0,
        session_id: int | None = None,
    ) -> SearchPage:
        """Segments of every session of ``space_id`` (or of one session) matching ``q``, best
        first: ``ts_rank_cd`` of the segment's vector against its configuration's query (ties:
        newest segment first), each with a ``ts_headline`` snippet whose matches are wrapped in
        :data:`HIGHLIGHT_START` / :data:`HIGHLIGHT_STOP`. Paged by offset (the API bounds it);
        snippets are made for the returned page only."""
        if limit < 1 or offset < 0:
            raise ValueError("limit must be positive and offset not negative")
        stmt = search_statement(space_id, q, limit=limit + 1, offset=offset, session_id=session_id)
        if stmt is None:
            return SearchPage(items=[], has_more=False)
        async with self._read() as conn:
            rows = (await conn.execute(stmt)).all()
        items = [
            SearchHit(
                segment_id=r.segment_id,
                session_id=r.session_id,
                session_slug=r.session_slug,
                session_title=r.session_title,
                start_ms=r.start_ms,
                end_ms=r.end_ms,
                text=r.text,
                language=r.language,
                speaker_label=r.speaker_label,
                participant_identity=r.participant_identity,
                participant_name=r.participant_name,
                rank=float(r.rank),
                headline=r.headline,
                speaker=r.speaker,
                final_speaker=r.final_speaker,
                speaker_name=r.speaker_name,
                final_speaker_name=r.final_speaker_name,
                transcript_version=TranscriptVersion(r.transcript_version),
            )
            for r in rows[:limit]
        ]
        return SearchPage(items=items, has_more=len(rows) > limit)

    async def speakers(self, session_id: int, *, version: TranscriptVersion) -> list[SpeakerRecord]:
        """Each participant's in-track labels in ``version`` (``final``: the after-meeting label,
        else the live one) with their segment counts and names, by participant then label."""
        label = _version_label(version)
        rows = await self._list_speakers(
            (Segment.session_id == session_id, Segment.participant_id.is_not(None)), label
        )
        return [_speaker(r) for r in rows]

    async def _list_speakers(
        self, where: Sequence[ColumnElement[bool]], label: Any
    ) -> Sequence[Row[Any]]:
        counted = (
            select(
                Segment.participant_id.label("participant_id"),
                label.label("speaker"),
                func.count().label("segments"),
            )
            .where(*where, label.is_not(None))
            .group_by(Segment.participant_id, label)
            .subquery("counted")
        )
        stmt = (
            select(
                Participant.identity.label("participant_identity"),
                Participant.name.label("participant_name"),
                counted.c.speaker,
                counted.c.segments,
                SpeakerName.name,
            )
            .select_from(counted)
            .join(Participant, Participant.id == counted.c.participant_id)
            .outerjoin(
                SpeakerName,
                and_(
                    SpeakerName.participant_id == counted.c.participant_id,
                    SpeakerName.speaker == counted.c.speaker,
                ),
            )
            .order_by(Participant.identity, counted.c.speaker)
        )
        async with self._read() as conn:
            return (await conn.execute(stmt)).all()

    async def name_speaker(
        self,
        session_id: int,
        participant_identity: str,
        speaker: str,
        name: str | None,
        *,
        version: TranscriptVersion,
    ) -> SpeakerRecord | None:
        """Give the in-track label ``speaker`` of a participant a ``name`` (None or blank:
        remove the name); it applies to both versions (the after-meeting labels are mapped onto
        the live names). None when the session has no such participant or no segment of its
        carries that label (live or final). Returns the label as :meth:`speakers` lists it."""
        name = (name or "").strip() or None
        async with self._tx() as s:
            participant_id = (
                await s.execute(
                    select(Participant.id).where(
                        Participant.session_id == session_id,
                        Participant.identity == participant_identity,
                    )
                )
            ).scalar_one_or_none()
            if participant_id is None:
                return None
            used = (
                await s.execute(
                    select(Segment.id)
                    .where(
                        Segment.session_id == session_id,
                        Segment.participant_id == participant_id,
                        or_(Segment.speaker == speaker, Segment.final_speaker == speaker),
                    )
                    .limit(1)
                )
            ).first()
            if used is None:
                return None
            key = (SpeakerName.participant_id == participant_id, SpeakerName.speaker == speaker)
            if name is None:
                await s.execute(delete(SpeakerName).where(*key))
            else:
                await s.execute(
                    pg_insert(SpeakerName)
                    .values(
                        participant_id=participant_id,
                        speaker=speaker,
                        session_id=session_id,
                        name=name,
                    )
                    .on_conflict_do_update(
                        index_elements=[SpeakerName.participant_id, SpeakerName.speaker],
                        set_={"name": name, "updated_at": func.now()},
                    )
                )
        label = _version_label(version)
        rows = await self._list_speakers(
            (
                Segment.session_id == session_id,
                Segment.participant_id == participant_id,
                label == speaker,
            ),
            label,
        )
        if rows:
            return _speaker(rows[0])
        # the label is only in the other version: listed with no segments in this one
        return SpeakerRecord(participant_identity, None, speaker, 0, name)

    @staticmethod
    def _segment_select(session_id: int, *, q: str | None, include_words: bool) -> AnySelect:
        cols: list[Any] = list(_SEGMENT_COLUMNS)
        if include_words:
            cols.append(Segment.words.label("words_json"))
        stmt = (
            select(*cols)
            .select_from(Segment)
            .outerjoin(Participant, Participant.id == Segment.participant_id)
            .where(Segment.session_id == session_id)
        )
        condition = _search_condition(q)
        if condition is not None:
            stmt = stmt.where(condition)
        return stmt


def _version_label(version: TranscriptVersion) -> Any:
    """A segment's in-track label in ``version``: the after-meeting label where the pass set
    one (a track it did not relabel keeps its live labels), else the live label."""
    if version is TranscriptVersion.FINAL:
        return func.coalesce(Segment.final_speaker, Segment.speaker)
    return Segment.speaker


def _speaker(row: Row[Any]) -> SpeakerRecord:
    return SpeakerRecord(
        participant_identity=row.participant_identity,
        participant_name=row.participant_name,
        speaker=row.speaker,
        segments=int(row.segments),
        name=row.name,
    )


def search_statement(
    space_id: str, q: str, *, limit: int, offset: int = 0, session_id: int | None = None
) -> AnySelect | None:
    """The ranked search of :meth:`TranscriptStore.search_space` (``limit`` rows from
    ``offset``), or None for a blank ``q``: the matches of the space ranked in a subquery (the
    GIN index finds them), snippets made in the outer query for the page's rows only."""
    condition = _search_condition(q)
    if condition is None:
        return None
    query = _row_query(q.strip())
    ranked = (
        select(
            Segment.id,
            func.ts_rank_cd(Segment.search_vector, query).label("rank"),
        )
        .select_from(Segment)
        .join(Session, Session.id == Segment.session_id)
        .where(Session.space_id == space_id, condition)
    )
    if session_id is not None:
        ranked = ranked.where(Segment.session_id == session_id)
    page = (
        ranked.order_by(literal_column("rank").desc(), Segment.id.desc())
        .limit(limit)
        .offset(offset)
        .subquery("ranked")
    )
    clean = func.translate(Segment.text, HIGHLIGHT_START + HIGHLIGHT_STOP, "")
    stmt = (
        select(
            Segment.id.label("segment_id"),
            Segment.session_id,
            Session.slug.label("session_slug"),
            Session.title.label("session_title"),
            Segment.start_ms,
            Segment.end_ms,
            Segment.text,
            Segment.language,
            Segment.speaker_label,
            Participant.identity.label("participant_identity"),
            Participant.name.label("participant_name"),
            Segment.speaker,
            Segment.final_speaker,
            _renamed(Segment.speaker).label("speaker_name"),
            _renamed(Segment.final_speaker).label("final_speaker_name"),
            Session.transcript_version,
            page.c.rank,
            func.ts_headline(Segment.search_config, clean, query, literal(_HEADLINE_OPTIONS)).label(
                "headline"
            ),
        )
        .select_from(page)
        .join(Segment, Segment.id == page.c.id)
        .join(Session, Session.id == Segment.session_id)
        .outerjoin(Participant, Participant.id == Segment.participant_id)
        .order_by(page.c.rank.desc(), Segment.id.desc())
    )
    return stmt


def _search_condition(q: str | None) -> ColumnElement[bool] | None:
    """Each segment matched against ``q`` parsed with its own configuration: one indexable
    ``search_vector @@ <constant tsquery>`` per configuration, OR-ed (a BitmapOr on the GIN
    index). No substring branch: it cannot use the index (see the module docstring)."""
    if q is None or not q.strip():
        return None
    q = q.strip()
    return or_(
        *(
            and_(
                Segment.search_config == _regconfig(config),
                Segment.search_vector.op("@@")(func.websearch_to_tsquery(_regconfig(config), q)),
            )
            for config in SEARCH_CONFIGS
        )
    )


def _row_query(q: str) -> ColumnElement[Any]:
    """The tsquery of ``q`` in the row's own configuration (for ranking and snippets)."""
    return case(
        *(
            (
                Segment.search_config == _regconfig(config),
                func.websearch_to_tsquery(_regconfig(config), q),
            )
            for config in SEARCH_CONFIGS[:-1]
        ),
        else_=func.websearch_to_tsquery(_regconfig(SEARCH_CONFIGS[-1]), q),
    )


def _word_json(word: WordTiming) -> dict[str, Any]:
    return {
        "word": word.word,
        "start_ms": word.start_ms,
        "end_ms": word.end_ms,
        "probability": word.probability,
    }


def _segment(row: Row[Any], include_words: bool) -> SegmentRecord:
    record = _segment_of(row)
    if not include_words:
        return record
    words: tuple[WordTiming, ...] | None = None
    raw = row.words_json
    if isinstance(raw, str):  # defensive: a driver without the JSON codec
        raw = json.loads(raw)
    if raw is not None:
        words = tuple(
            WordTiming(
                word=w["word"],
                start_ms=int(w["start_ms"]),
                end_ms=int(w["end_ms"]),
                probability=w.get("probability"),
            )
            for w in raw
        )
    return replace(record, words=words)
