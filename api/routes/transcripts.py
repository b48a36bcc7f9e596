"""Transcripts: a paginated, searchable JSON page, or a whole download (SRT/VTT/TXT/DOCX/JSON)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator

from aiohttp import web

from api import exports
from api.context import context, principal
from api.errors import NotFound, ValidationFailed
from api.http import json_model, parse_query
from api.openapi import Operation, Reply
from api.ratelimit import enforce
from api.routes.common import SLUG_RE, scoped_session
from api.schemas import SegmentOut, TranscriptExport, TranscriptPage, TranscriptQuery
from core import transcripts as documents
from core.transcripts import ExportFormat, ExportHeader, ExportSegment
from store.records import SegmentCursor, SegmentRecord, SessionRecord
from store.stores import Store

# rows fetched per query while streaming an export
EXPORT_BATCH = 2000


def speaker_name(segment: SegmentRecord) -> str:
    return segment.participant_name or segment.speaker_label or segment.participant_identity or ""


def _segment_out(segment: SegmentRecord) -> SegmentOut:
    # rows from the database already have the schema's types: skip validation (hot path)
    return SegmentOut.model_construct(
        id=segment.id,
        utterance_id=segment.utterance_id,
        speaker=speaker_name(segment),
        speaker_identity=segment.participant_identity,
        text=segment.text,
        language=segment.language,
        start_ms=segment.start_ms,
        end_ms=segment.end_ms,
        confidence=segment.confidence,
    )


def _export_segment(segment: SegmentRecord) -> ExportSegment:
    return ExportSegment(
        start_ms=segment.start_ms,
        end_ms=segment.end_ms,
        speaker=speaker_name(segment),
        text=segment.text,
        speaker_identity=segment.participant_identity or "",
        language=segment.language,
    )


async def _batches(repo: Store, session_id: int) -> AsyncIterator[list[ExportSegment]]:
    cursor: SegmentCursor | None = None
    while True:
        page = await repo.transcripts.transcript_page(session_id, after=cursor, limit=EXPORT_BATCH)
        yield [_export_segment(s) for s in page.items]
        if page.next_cursor is None:
            return
        cursor = page.next_cursor


async def transcript(request: web.Request) -> web.StreamResponse:
    who = principal(request)
    query = parse_query(request, TranscriptQuery)
    ctx = context(request)
    if query.format is not None:
        enforce(request, "export")
        scoped = await scoped_session(request)
        return await _download(request, ctx.store, scoped.session, query.format)
    after = None
    if query.cursor:
        try:
            after = SegmentCursor.decode(query.cursor)
        except ValueError as exc:
            raise ValidationFailed("cursor: invalid cursor") from exc
    if query.q is not None:
        enforce(request, "search")
        scoped = await scoped_session(request)
        page = await ctx.store.transcripts.transcript_page(
            scoped.session.id, q=query.q, after=after, limit=query.limit
        )
    else:
        # the hot path: session and page in one statement (TranscriptStore.session_page)
        slug = request.match_info["slug"]
        found = None
        if SLUG_RE.match(slug):
            found = await ctx.store.transcripts.session_page(slug, after=after, limit=query.limit)
        if found is None or not who.can_see_space(found[0].space_id):
            raise NotFound("no such session")
        page = found[1]
    return json_model(
        TranscriptPage(
            items=[_segment_out(s) for s in page.items],
            next_cursor=page.next_cursor.encode() if page.next_cursor else None,
        )
    )


async def _download(
    request: web.Request, repo: Store, session: SessionRecord, fmt: ExportFormat
) -> web.StreamResponse:
    header = ExportHeader(slug=session.slug, title=session.title, space_id=session.space_id)
    headers = {
        "Content-Type": exports.CONTENT_TYPES[fmt],
        "Content-Disposition": exports.content_disposition(session.slug, fmt),
    }
    if fmt is ExportFormat.DOCX:
        segments = [s async for batch in _batches(repo, session.id) for s in batch]
        loop = asyncio.get_running_loop()
        body = await loop.run_in_executor(None, documents.render_docx, header, segments)
        return web.Response(body=body, headers=headers)

    # text formats stream: one query per batch of rows, UTF-8 chunks written as they are made
    response = web.StreamResponse(headers=headers)
    first = True
    index = 1
    async for batch in _batches(repo, session.id):
        if fmt is ExportFormat.SRT:
            chunks = documents.render_srt(batch, first_index=index)
            index += len(batch)
        elif fmt is ExportFormat.VTT:
            chunks = documents.render_vtt(batch, header=first)
        elif fmt is ExportFormat.TXT:
            chunks = documents.render_txt(batch)
        else:
            chunks = documents.render_json_items(batch, first=first)
            if first:
                chunks = itertools.chain([documents.json_prefix(header)], chunks)
        data = b"".join(documents.encode_chunks(chunks))
        if first:
            await response.prepare(request)  # only now: a failed first query is still a JSON error
            first = False
        if data:
            await response.write(data)
    if fmt is ExportFormat.JSON:
        await response.write(documents.JSON_SUFFIX.encode())
    await response.write_eof()
    return response


_FILE_MEDIA = {
    "application/x-subrip": {"type": "string"},
    "text/vtt": {"type": "string"},
    "text/plain": {"type": "string"},
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": {
        "type": "string",
        "format": "binary",
    },
}

OPERATIONS = [
    Operation(
        "GET", "/api/sessions/{slug}/transcript", transcript, "getTranscript",
        "Transcript page (JSON, searchable with q) or a download with ?format=", "transcripts",
        replies=(
            Reply(
                200,
                "A page of segments; with ?format= the whole transcript as a file "
                "(Content-Disposition: attachment), speaker names and timestamps included",
                TranscriptPage,
                alternatives=(TranscriptExport,),
                media=_FILE_MEDIA,
                headers=("Content-Disposition",),
            ),
        ),
        query=TranscriptQuery,
        errors=(429,),
    ),
]  # fmt: skip
