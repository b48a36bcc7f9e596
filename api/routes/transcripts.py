"""Transcripts: a paginated, searchable JSON page, or a whole download (SRT/VTT/TXT/DOCX/JSON)."""

from __future__ import annotations

import asyncio
import functools
import itertools
from collections.abc import AsyncIterator

from aiohttp import web

from api import exports
from api.auth import SERVICE_USER, Role
from api.context import ApiContext, context, principal
from api.errors import ExportTooLarge, Forbidden, NotFound, ValidationFailed
from api.http import json_model, parse_body, parse_query
from api.openapi import Operation, Reply
from api.ratelimit import enforce
from api.routes.common import SLUG_RE, scoped_session
from api.schemas import (
    SegmentCorrection,
    SegmentOut,
    TranscriptExport,
    TranscriptPage,
    TranscriptQuery,
)
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
        original_text=segment.original_text,
        corrected_by=segment.corrected_by,
        corrected_at=segment.corrected_at,
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
        return await _download(request, ctx, scoped.session, query.format)
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


_MAX_ID = 2**63 - 1


async def correct_segment(request: web.Request) -> web.Response:
    """Replace a final's text (the session's creator, its participants, or an admin)."""
    scoped = await scoped_session(request)
    raw_id = request.match_info["segment_id"]
    segment_id = int(raw_id) if raw_id.isdigit() and len(raw_id) < 20 else 0
    if not 0 < segment_id <= _MAX_ID:
        raise NotFound("no such segment")
    who = scoped.who
    repo = context(request).store
    if who.user_id != scoped.session.created_by and who.role < Role.ADMIN:
        joined = who.user_id is not None and (
            await repo.sessions.get_participant(scoped.session.id, who.user_id) is not None
        )
        if not joined:
            raise Forbidden("only the session's participants, its creator or an admin may do this")
    body = await parse_body(request, SegmentCorrection)
    corrected = await repo.transcripts.correct_segment(
        scoped.session.id, segment_id, body.text, corrected_by=who.user_id or SERVICE_USER
    )
    if corrected is None:
        raise NotFound("no such segment")
    return json_model(_segment_out(corrected))


# nginx's "client closed request": the status recorded when the client left mid-export
CLIENT_GONE = 499


def _client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


async def _download(
    request: web.Request, ctx: ApiContext, session: SessionRecord, fmt: ExportFormat
) -> web.StreamResponse:
    """The whole transcript as a file. Text formats stream batch by batch (memory bounded by a
    batch); DOCX is built in memory, so it is capped (``API_EXPORT_DOCX_MAX_SEGMENTS``, else 422
    ``export_too_large``) and built on the app's one render thread, off the event loop. Either
    stops reading rows and rendering when the client disconnects."""
    header = ExportHeader(slug=session.slug, title=session.title, space_id=session.space_id)
    headers = {
        "Content-Type": exports.CONTENT_TYPES[fmt],
        "Content-Disposition": exports.content_disposition(session.slug, fmt),
    }
    exported = ctx.metrics.exports
    if fmt is ExportFormat.DOCX:
        cap = ctx.settings.api_export_docx_max_segments
        segments: list[ExportSegment] = []
        async for batch in _batches(ctx.store, session.id):
            if _client_gone(request):
                exported.labels(fmt.value, "cancelled").inc()
                return web.Response(status=CLIENT_GONE)
            segments += batch
            if len(segments) > cap:
                exported.labels(fmt.value, "too_large").inc()
                raise ExportTooLarge(
                    f"the transcript has more than {cap} segments, the most a DOCX export "
                    "holds; download it as txt, srt, vtt or json (streamed, no limit)"
                )
        render = functools.partial(
            documents.render_docx, header, segments, cancelled=lambda: _client_gone(request)
        )
        try:
            # if this await is cancelled the thread runs on, and stops at its next check
            body = await asyncio.get_running_loop().run_in_executor(ctx.render_executor, render)
        except documents.RenderCancelled:
            exported.labels(fmt.value, "cancelled").inc()
            return web.Response(status=CLIENT_GONE)
        except asyncio.CancelledError:
            exported.labels(fmt.value, "cancelled").inc()
            raise
        exported.labels(fmt.value, "ok").inc()
        return web.Response(body=body, headers=headers)

    # text formats stream: one query per batch of rows, UTF-8 chunks written as they are made
    response = web.StreamResponse(headers=headers)
    first = True
    index = 1
    try:
        async for batch in _batches(ctx.store, session.id):
            if not first and _client_gone(request):
                raise ConnectionResetError("client disconnected")
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
                # only now: a failed first query is still a JSON error
                await response.prepare(request)
                first = False
            if data:
                await response.write(data)
        if fmt is ExportFormat.JSON:
            await response.write(documents.JSON_SUFFIX.encode())
        await response.write_eof()
    except ConnectionResetError:
        # the client went away (aiohttp's ClientConnectionResetError is one): stop reading rows
        exported.labels(fmt.value, "cancelled").inc()
        return response
    except asyncio.CancelledError:
        # aiohttp cancels a write blocked on a connection that is lost
        exported.labels(fmt.value, "cancelled").inc()
        raise
    exported.labels(fmt.value, "ok").inc()
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
    Operation(
        "PATCH", "/api/sessions/{slug}/transcript/segments/{segment_id}", correct_segment,
        "correctSegment", "Correct a final segment's text", "transcripts",
        replies=(Reply(200, "The corrected segment", SegmentOut),),
        body=SegmentCorrection,
        description="The session's creator, its registered participants or an admin. The "
        "decoded text is kept in original_text (a second correction keeps the first "
        "original), with who corrected it and when; transcript pages, search and downloads "
        "show the corrected text, and the bot re-sending that final does not overwrite it.",
    ),
]  # fmt: skip
