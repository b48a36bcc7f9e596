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
from api.errors import Conflict, ExportTooLarge, Forbidden, NotFound, ValidationFailed
from api.http import json_model, parse_body, parse_query
from api.openapi import Operation, Reply
from api.ratelimit import enforce
from api.routes.common import SLUG_RE, Scoped, scoped_session
from api.schemas import (
    SegmentCorrection,
    SegmentOut,
    SpeakerList,
    SpeakerNaming,
    SpeakerOut,
    TranscriptExport,
    TranscriptPage,
    TranscriptQuery,
)
from core import transcripts as documents
from core.transcripts import ExportFormat, ExportHeader, ExportSegment
from store.enums import TranscriptVersion
from store.records import SegmentCursor, SegmentRecord, SessionRecord, SpeakerRecord
from store.stores import Store

# rows fetched per query while streaming an export
EXPORT_BATCH = 2000


def in_track_label(
    version: TranscriptVersion,
    live: tuple[str | None, str | None],
    final: tuple[str | None, str | None],
) -> tuple[str | None, str | None]:
    """A segment's in-track (label, given name) in ``version``: the after-meeting label where
    the pass set one (a track it did not relabel keeps its live labels), else the live one."""
    if version is TranscriptVersion.FINAL and final[0] is not None:
        return final
    return live


def speaker_name(segment: SegmentRecord, version: TranscriptVersion) -> tuple[str, str | None]:
    """The display speaker of a segment in ``version`` and its in-track label."""
    label, name = in_track_label(
        version,
        (segment.speaker, segment.speaker_name),
        (segment.final_speaker, segment.final_speaker_name),
    )
    if label is None:
        shown = segment.participant_name or segment.speaker_label or segment.participant_identity
        return shown or "", None
    participant = segment.participant_name or segment.participant_identity or ""
    return documents.speaker_display(participant, label, name), label


def _segment_out(segment: SegmentRecord, version: TranscriptVersion) -> SegmentOut:
    # rows from the database already have the schema's types: skip validation (hot path)
    shown, label = speaker_name(segment, version)
    return SegmentOut.model_construct(
        id=segment.id,
        utterance_id=segment.utterance_id,
        speaker=shown,
        speaker_identity=segment.participant_identity,
        speaker_label=label,
        text=segment.text,
        language=segment.language,
        start_ms=segment.start_ms,
        end_ms=segment.end_ms,
        confidence=segment.confidence,
        original_text=segment.original_text,
        corrected_by=segment.corrected_by,
        corrected_at=segment.corrected_at,
    )


def _export_segment(segment: SegmentRecord, version: TranscriptVersion) -> ExportSegment:
    shown, label = speaker_name(segment, version)
    return ExportSegment(
        start_ms=segment.start_ms,
        end_ms=segment.end_ms,
        speaker=shown,
        text=segment.text,
        speaker_identity=segment.participant_identity or "",
        language=segment.language,
        speaker_label=label,
    )


def read_version(session: SessionRecord, asked: TranscriptVersion | None) -> TranscriptVersion:
    """The version a reader gets: the one asked for, else the session's. Asking for ``final``
    before the after-meeting pass made one is a 409 (no silent fallback: a caller who wants the
    final labels must not take live ones for them)."""
    if asked is None:
        return session.transcript_version
    if asked is TranscriptVersion.FINAL and session.transcript_version is not asked:
        raise Conflict(
            "the session has no final transcript yet (the after-meeting diarization has not "
            "run); read version=live",
            code="transcript_not_final",
        )
    return asked


VERSION_HEADER = "X-Transcript-Version"


async def _batches(
    repo: Store, session_id: int, version: TranscriptVersion
) -> AsyncIterator[list[ExportSegment]]:
    cursor: SegmentCursor | None = None
    while True:
        page = await repo.transcripts.transcript_page(session_id, after=cursor, limit=EXPORT_BATCH)
        yield [_export_segment(s, version) for s in page.items]
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
        version = read_version(scoped.session, query.version)
        return await _download(request, ctx, scoped.session, query.format, version)
    after = None
    if query.cursor:
        try:
            after = SegmentCursor.decode(query.cursor)
        except ValueError as exc:
            raise ValidationFailed("cursor: invalid cursor") from exc
    if query.q is not None:
        enforce(request, "search")
        scoped = await scoped_session(request)
        version = read_version(scoped.session, query.version)
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
        version = read_version(found[0], query.version)
        page = found[1]
    response = json_model(
        TranscriptPage(
            transcript_version=version,
            items=[_segment_out(s, version) for s in page.items],
            next_cursor=page.next_cursor.encode() if page.next_cursor else None,
        )
    )
    response.headers[VERSION_HEADER] = version.value
    return response


_MAX_ID = 2**63 - 1


async def _require_editor(repo: Store, scoped: Scoped) -> None:
    """Who may edit a transcript (correct a segment, name a speaker): the session's creator,
    its registered participants, or an admin."""
    who = scoped.who
    if who.user_id != scoped.session.created_by and who.role < Role.ADMIN:
        joined = who.user_id is not None and (
            await repo.sessions.get_participant(scoped.session.id, who.user_id) is not None
        )
        if not joined:
            raise Forbidden("only the session's participants, its creator or an admin may do this")


def _speaker_out(speaker: SpeakerRecord) -> SpeakerOut:
    participant = speaker.participant_name or speaker.participant_identity
    return SpeakerOut(
        participant_identity=speaker.participant_identity,
        participant_name=speaker.participant_name,
        speaker=speaker.speaker,
        segments=speaker.segments,
        name=speaker.name,
        display=documents.speaker_display(participant, speaker.speaker, speaker.name),
    )


async def list_speakers(request: web.Request) -> web.Response:
    """Each participant's in-track speaker labels, counted in the session's version."""
    scoped = await scoped_session(request)
    version = scoped.session.transcript_version
    found = await context(request).store.transcripts.speakers(scoped.session.id, version=version)
    return json_model(
        SpeakerList(transcript_version=version, items=[_speaker_out(s) for s in found])
    )


async def name_speaker(request: web.Request) -> web.Response:
    """Name (or un-name) a participant's in-track speaker label."""
    scoped = await scoped_session(request)
    repo = context(request).store
    await _require_editor(repo, scoped)
    body = await parse_body(request, SpeakerNaming)
    named = await repo.transcripts.name_speaker(
        scoped.session.id,
        body.participant_identity,
        body.speaker,
        body.name,
        version=scoped.session.transcript_version,
    )
    if named is None:
        raise NotFound("no such speaker label of that participant in this session")
    return json_model(_speaker_out(named))


async def correct_segment(request: web.Request) -> web.Response:
    """Replace a final's text (the session's creator, its participants, or an admin)."""
    scoped = await scoped_session(request)
    raw_id = request.match_info["segment_id"]
    segment_id = int(raw_id) if raw_id.isdigit() and len(raw_id) < 20 else 0
    if not 0 < segment_id <= _MAX_ID:
        raise NotFound("no such segment")
    who = scoped.who
    repo = context(request).store
    await _require_editor(repo, scoped)
    body = await parse_body(request, SegmentCorrection)
    corrected = await repo.transcripts.correct_segment(
        scoped.session.id, segment_id, body.text, corrected_by=who.user_id or SERVICE_USER
    )
    if corrected is None:
        raise NotFound("no such segment")
    return json_model(_segment_out(corrected, scoped.session.transcript_version))


# nginx's "client closed request": the status recorded when the client left mid-export
CLIENT_GONE = 499


def _client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


async def _download(
    request: web.Request,
    ctx: ApiContext,
    session: SessionRecord,
    fmt: ExportFormat,
    version: TranscriptVersion,
) -> web.StreamResponse:
    """The whole transcript as a file. Text formats stream batch by batch (memory bounded by a
    batch); DOCX is built in memory, so it is capped (``API_EXPORT_DOCX_MAX_SEGMENTS``, else 422
    ``export_too_large``) and built on the app's one render thread, off the event loop. Either
    stops reading rows and rendering when the client disconnects."""
    header = ExportHeader(
        slug=session.slug,
        title=session.title,
        space_id=session.space_id,
        transcript_version=version.value,
    )
    headers = {
        "Content-Type": exports.CONTENT_TYPES[fmt],
        "Content-Disposition": exports.content_disposition(session.slug, fmt),
        VERSION_HEADER: version.value,
    }
    exported = ctx.metrics.exports
    if fmt is ExportFormat.DOCX:
        cap = ctx.settings.api_export_docx_max_segments
        segments: list[ExportSegment] = []
        async for batch in _batches(ctx.store, session.id, version):
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
        async for batch in _batches(ctx.store, session.id, version):
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
                headers=("Content-Disposition", VERSION_HEADER),
            ),
        ),
        query=TranscriptQuery,
        errors=(409, 429),
    ),
    Operation(
        "GET", "/api/sessions/{slug}/speakers", list_speakers, "listSpeakers",
        "The in-track speaker labels of diarized tracks, with their names", "transcripts",
        replies=(Reply(200, "Labels by participant, counted in the session's version",
                       SpeakerList),),
        description="Only diarized tracks have in-track labels ('Speaker 2'); a participant "
        "whose track was not diarized is shown by name and is not listed.",
    ),
    Operation(
        "PUT", "/api/sessions/{slug}/speakers", name_speaker, "nameSpeaker",
        "Name a participant's in-track speaker label ('Speaker 2' -> 'Maria')", "transcripts",
        replies=(Reply(200, "The label with its name", SpeakerOut),),
        body=SpeakerNaming,
        description="The session's creator, its registered participants or an admin. Pages, "
        "search and every download then show the name instead of "
        "'<participant> · <label>', in both transcript versions (the after-meeting labels "
        "are mapped onto the live ones). A null or blank name removes it. 404 when the "
        "participant has no segment with that label.",
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
