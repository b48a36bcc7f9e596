"""Search across the sessions of the caller's space: ranked, highlighted, linked to the time.

``GET /api/search?q=`` finds final segments of every session of the space (or of one session
with ``?session=``) through the full-text index (``TranscriptStore.search_space``): best match
first (``ts_rank_cd``), each with an HTML snippet (text escaped, matches in ``<mark>``) and a
link to the transcript page that starts at the segment. Pages are bounded offsets
(``MAX_SEARCH_OFFSET``). Another space's session named in ``?session=`` is a 404, as elsewhere.
"""

from __future__ import annotations

import html
from urllib.parse import quote

from aiohttp import web

from api.context import context, principal
from api.errors import NotFound
from api.http import json_model, parse_query
from api.openapi import Operation, Reply
from api.ratelimit import enforce
from api.routes.transcripts import in_track_label
from api.schemas import MAX_SEARCH_OFFSET, SearchHitOut, SearchQuery, SearchResults
from core.transcripts import speaker_display
from store.records import SearchHit, SegmentCursor
from store.transcripts import HIGHLIGHT_START, HIGHLIGHT_STOP


def snippet_html(headline: str) -> str:
    """``ts_headline``'s output as safe HTML: escaped, our markers turned into ``<mark>``."""
    return (
        html.escape(headline, quote=True)
        .replace(HIGHLIGHT_START, "<mark>")
        .replace(HIGHLIGHT_STOP, "</mark>")
    )


def transcript_url(hit: SearchHit) -> str:
    """The transcript page starting at the hit: the keyset cursor just before it."""
    cursor = SegmentCursor(hit.start_ms, hit.segment_id - 1).encode()
    return f"/api/sessions/{quote(hit.session_slug)}/transcript?cursor={cursor}"


def hit_speaker(hit: SearchHit) -> str:
    """The hit's speaker as its transcript shows it (session's version, given names)."""
    label, name = in_track_label(
        hit.transcript_version,
        (hit.speaker, hit.speaker_name),
        (hit.final_speaker, hit.final_speaker_name),
    )
    if label is None:
        return hit.participant_name or hit.speaker_label or hit.participant_identity or ""
    participant = hit.participant_name or hit.participant_identity or ""
    return speaker_display(participant, label, name)


def _hit_out(hit: SearchHit) -> SearchHitOut:
    return SearchHitOut(
        session_slug=hit.session_slug,
        session_title=hit.session_title,
        segment_id=hit.segment_id,
        start_ms=hit.start_ms,
        end_ms=hit.end_ms,
        speaker=hit_speaker(hit),
        speaker_identity=hit.participant_identity,
        language=hit.language,
        text=hit.text,
        snippet_html=snippet_html(hit.headline),
        rank=hit.rank,
        transcript_url=transcript_url(hit),
    )


async def search(request: web.Request) -> web.Response:
    who = principal(request)
    space_id = who.require_space()
    # a search is the API's most expensive read (bench/search.py): counted before any query
    enforce(request, "search")
    query = parse_query(request, SearchQuery)
    store = context(request).store
    session_id = None
    if query.session is not None:
        found = await store.sessions.get_session(query.session)
        if found is None or found.space_id != space_id:
            raise NotFound("no such session")
        session_id = found.id
    page = await store.transcripts.search_space(
        space_id, query.q, limit=query.limit, offset=query.offset, session_id=session_id
    )
    next_offset = query.offset + query.limit
    return json_model(
        SearchResults(
            items=[_hit_out(hit) for hit in page.items],
            next_offset=next_offset if page.has_more and next_offset <= MAX_SEARCH_OFFSET else None,
        )
    )


OPERATIONS = [
    Operation(
        "GET", "/api/search", search, "searchTranscripts",
        "Search the transcripts of every session of the space: ranked, highlighted, with links",
        "transcripts",
        replies=(Reply(200, "Matching segments, best first", SearchResults),),
        query=SearchQuery, errors=(404,),
    ),
]  # fmt: skip
