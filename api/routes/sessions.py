"""Sessions, join tokens, participant registration and transcription control."""

from __future__ import annotations

import base64
import binascii
import datetime as dt

from aiohttp import web

from api import transcription
from api.auth import Role
from api.context import context, principal
from api.errors import BadRequest, Conflict, Forbidden, NotFound, ValidationFailed
from api.http import json_model, parse_body, parse_query
from api.openapi import Operation, Reply
from api.routes.common import Scoped, scoped_session, session_out
from api.schemas import (
    JoinOut,
    JoinTokenOut,
    ParticipantJoin,
    ParticipantList,
    ParticipantListQuery,
    ParticipantOut,
    SessionCreate,
    SessionListQuery,
    SessionOut,
    SessionPage,
    SessionUpdate,
    SpaceSettingsOut,
    SpaceSettingsUpdate,
    TokenQuery,
)
from core.speech import whisper_language
from store.enums import ParticipantRole, SessionStatus
from store.records import ParticipantRecord, SessionCursor, SessionRecord, SpaceSettingsRecord

_MAX_ID = 2**63 - 1


def encode_cursor(cursor: SessionCursor) -> str:
    raw = f"{cursor.created_at.isoformat()}|{cursor.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(token: str) -> SessionCursor:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        stamp, id_text = raw.split("|")
        created_at, id_ = dt.datetime.fromisoformat(stamp), int(id_text)
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise ValidationFailed("cursor: invalid cursor") from exc
    if created_at.tzinfo is None or not 0 <= id_ <= _MAX_ID:
        raise ValidationFailed("cursor: invalid cursor")
    try:
        # the driver sends UTC: an offset that moves the time past year 1 or 9999 fails there
        created_at = created_at.astimezone(dt.UTC)
    except (OverflowError, ValueError) as exc:
        raise ValidationFailed("cursor: invalid cursor") from exc
    return SessionCursor(created_at, id_)


def _language(code: str | None) -> str | None:
    """The language to store (None: automatic detection); 400 for one Whisper cannot decode."""
    try:
        return None if whisper_language(code) is None else code
    except ValueError as exc:
        raise BadRequest(str(exc), code="unsupported_language") from exc


def _check_speech(request: web.Request, language: str | None, model: str | None) -> None:
    """The model is one the workers have (``ASR_MODELS``), and can decode the language."""
    if model is None:
        return
    allowed = context(request).settings.allowed_models()
    if model not in allowed:
        raise BadRequest(
            f"unknown model; choose one of: {', '.join(allowed)}", code="unknown_model"
        )
    spoken = whisper_language(language)
    if model.endswith(".en") and spoken not in (None, "en"):
        raise BadRequest(
            f"model {model} is English-only; it cannot decode {spoken}",
            code="unsupported_language",
        )


async def create_session(request: web.Request) -> web.Response:
    who = principal(request)
    space_id = who.require_space()
    body = await parse_body(request, SessionCreate)
    language = _language(body.language)
    _check_speech(request, language, body.model)
    session = await context(request).store.sessions.create_session(
        space_id=space_id,
        created_by=who.user_id,  # None: the admin key for no user; nobody owns the session
        title=body.title,
        language=language,
        hotwords=body.hotwords or None,
        initial_prompt=body.initial_prompt or None,
        asr_model=body.model,
        diarization=body.diarization,
    )
    return json_model(session_out(session, None), status=201)


async def update_session(request: web.Request) -> web.Response:
    scoped = await scoped_session(request)
    scoped.require_owner_or(Role.ADMIN)
    body = await parse_body(request, SessionUpdate)
    given = body.model_fields_set
    changes: dict[str, object] = {}
    if "language" in given:
        changes["language"] = _language(body.language)
    for name in ("hotwords", "initial_prompt"):
        if name in given:
            changes[name] = getattr(body, name) or None
    if "model" in given:
        changes["asr_model"] = body.model
    language = changes.get("language", scoped.session.language)
    model = changes.get("asr_model", scoped.session.asr_model)
    assert language is None or isinstance(language, str)
    assert model is None or isinstance(model, str)
    if "language" in given or "model" in given:
        _check_speech(request, language, model)
    repo = context(request).store
    updated: SessionRecord | None = await repo.sessions.update_session(
        scoped.session.id,
        title=body.title,
        diarization=body.diarization,
        **changes,
    )
    if updated is None:
        raise NotFound("no such session")  # deleted meanwhile
    return json_model(session_out(updated, scoped.job))


async def list_sessions(request: web.Request) -> web.Response:
    who = principal(request)
    space_id = who.require_space()
    query = parse_query(request, SessionListQuery)
    before = decode_cursor(query.cursor) if query.cursor else None
    rows = await context(request).store.sessions.list_sessions_with_jobs(
        space_id=space_id,
        status=query.status,
        # an explicit status filter wins: ?status=EXPIRED lists expired sessions
        include_expired=query.include_expired or query.status is not None,
        before=before,
        limit=query.limit + 1,
    )
    page = rows[: query.limit]
    next_cursor = None
    if len(rows) > query.limit:
        last = page[-1][0]
        next_cursor = encode_cursor(SessionCursor(last.created_at, last.id))
    return json_model(
        SessionPage(items=[session_out(s, j) for s, j in page], next_cursor=next_cursor)
    )


async def get_session(request: web.Request) -> web.Response:
    scoped = await scoped_session(request)
    return json_model(session_out(scoped.session, scoped.job))


async def _require_may_end(request: web.Request, scoped: Scoped) -> None:
    """The creator or an admin; any participant too when the space allows it."""
    who = scoped.who
    if who.user_id == scoped.session.created_by or who.role >= Role.ADMIN:
        return
    sessions = context(request).store.sessions
    if (
        who.user_id is not None
        and (await sessions.get_space_settings(scoped.session.space_id)).participants_may_end
    ):
        if await sessions.get_participant(scoped.session.id, who.user_id) is not None:
            return
        raise Forbidden("only the session's participants, its creator or an admin may end it")
    raise Forbidden("only the session's creator or an admin may do this")


async def end_session(request: web.Request) -> web.Response:
    scoped = await scoped_session(request)
    await _require_may_end(request, scoped)
    repo = context(request).store
    ended = await repo.sessions.end_session(scoped.session.id, reason="ended_by_api")
    if ended is None:
        raise NotFound("no such session")  # deleted meanwhile
    return json_model(session_out(ended, await repo.jobs.get_job(ended.id)))


async def delete_session(request: web.Request) -> web.Response:
    scoped = await scoped_session(request)
    scoped.require_owner_or(Role.ADMIN)
    await context(request).store.sessions.delete_session(scoped.session.id)
    return web.Response(status=204)


async def join_token(request: web.Request) -> web.Response:
    """A short-lived join token (``API_JOIN_TOKEN_TTL_MINUTES``) that never outlives the
    session: none for an ended one, and a CREATED one's token ends when the session would
    expire. Clients ask again for a new token to (re)join after ``expires_at``."""
    scoped = await scoped_session(request)
    scoped.require_active()
    identity = scoped.who.require_user()
    query = parse_query(request, TokenQuery)
    ctx = context(request)
    now = dt.datetime.now(dt.UTC)
    expires_at = now + ctx.livekit.token_ttl
    if scoped.session.status is SessionStatus.CREATED:
        expires_at = min(
            expires_at,
            scoped.session.created_at + dt.timedelta(hours=ctx.settings.session_expire_hours),
        )
    if expires_at <= now:
        raise Conflict("the session has expired", code="session_not_active")
    expires_at = expires_at.replace(microsecond=0)
    token = ctx.livekit.join_token(
        room=scoped.session.slug,
        identity=identity,
        name=query.name or "",
        can_publish=query.speak,
        ttl=expires_at - now,
    )
    return json_model(
        JoinTokenOut(
            token=token,
            url=ctx.livekit.url,
            room=scoped.session.slug,
            identity=identity,
            expires_at=expires_at,
            can_publish=query.speak,
        )
    )


async def register_participant(request: web.Request) -> web.Response:
    scoped = await scoped_session(request)
    scoped.require_active()
    identity = scoped.who.require_user()
    body = await parse_body(request, ParticipantJoin)
    ctx = context(request)
    repo = ctx.store
    participant = await repo.sessions.participant_joined(
        scoped.session.id,
        identity,
        name=body.name or None,
        user_id=identity,
        role=ParticipantRole.HOST
        if identity == scoped.session.created_by
        else ParticipantRole.GUEST,
    )
    session = await repo.sessions.get_session_by_id(scoped.session.id) or scoped.session
    job, refused = await transcription.on_join(
        repo, session, scoped.job, limits=ctx.limits, user_id=identity
    )
    return json_model(
        JoinOut(
            participant=_participant_out(participant),
            session=session_out(session, job),
            transcription_refused=refused,
        )
    )


def _participant_out(p: ParticipantRecord) -> ParticipantOut:
    return ParticipantOut.model_validate(p, from_attributes=True)


async def list_participants(request: web.Request) -> web.Response:
    scoped = await scoped_session(request)
    query = parse_query(request, ParticipantListQuery)
    rows = await context(request).store.sessions.list_participants(
        scoped.session.id, active=query.active
    )
    return json_model(ParticipantList(items=[_participant_out(p) for p in rows]))


def _space_settings_out(record: SpaceSettingsRecord) -> SpaceSettingsOut:
    return SpaceSettingsOut(
        space_id=record.space_id, participants_may_end=record.participants_may_end
    )


async def get_space_settings(request: web.Request) -> web.Response:
    space_id = principal(request).require_space()
    record = await context(request).store.sessions.get_space_settings(space_id)
    return json_model(_space_settings_out(record))


async def put_space_settings(request: web.Request) -> web.Response:
    who = principal(request)
    who.require(Role.ADMIN)
    space_id = who.require_space()
    body = await parse_body(request, SpaceSettingsUpdate)
    record = await context(request).store.sessions.set_space_settings(
        space_id, participants_may_end=body.participants_may_end
    )
    return json_model(_space_settings_out(record))


async def start_transcription(request: web.Request) -> web.Response:
    scoped = await scoped_session(request)
    scoped.require_active()
    ctx = context(request)
    job = await transcription.start(
        ctx.store, scoped.session, limits=ctx.limits, user_id=scoped.who.user_id
    )
    return json_model(session_out(scoped.session, job))


async def stop_transcription(request: web.Request) -> web.Response:
    scoped = await scoped_session(request)
    job = await context(request).store.jobs.stop_transcription(
        scoped.session.id, reason=transcription.STOPPED_BY_USER
    )
    return json_model(session_out(scoped.session, job))


_S = "/api/sessions/{slug}"
_SESSION = Reply(200, "The session", SessionOut)

OPERATIONS = [
    Operation(
        "POST", "/api/sessions", create_session, "createSession", "Create a session", "sessions",
        replies=(Reply(201, "Created; the slug is the LiveKit room name", SessionOut),),
        body=SessionCreate,
        description="400 unsupported_language for a language Whisper cannot decode (or an "
        "English-only model with another language), 400 unknown_model for a model outside "
        "ASR_MODELS.",
    ),
    Operation(
        "GET", "/api/sessions", list_sessions, "listSessions",
        "List the space's sessions, newest first", "sessions",
        replies=(Reply(200, "One page", SessionPage),), query=SessionListQuery,
    ),
    Operation(
        "GET", _S, get_session, "getSession", "Get a session", "sessions", replies=(_SESSION,)
    ),
    Operation(
        "PATCH", _S, update_session, "updateSession",
        "Change a session's title or speech settings (creator or admin)", "sessions",
        replies=(_SESSION,), body=SessionUpdate,
        description="Only the fields present change; null resets a speech setting to the "
        "worker's default. The bot reads language, hotwords, initial_prompt, model and "
        "diarization when a track's transcription starts: tracks already running keep the "
        "settings they started with. 400 unsupported_language for a language Whisper cannot "
        "decode (or an English-only model with another language), 400 unknown_model for a "
        "model outside ASR_MODELS.",
    ),
    Operation(
        "POST", f"{_S}/end", end_session, "endSession",
        "End a session (creator or admin; any participant when the space allows it); "
        "stops transcription", "sessions",
        replies=(Reply(200, "The ended session (unchanged if already over)", SessionOut),),
        description="With the space setting participants_may_end (PUT /api/space/settings), "
        "any registered participant of the session may end it.",
    ),
    Operation(
        "DELETE", _S, delete_session, "deleteSession",
        "Delete a session with its participants and transcript (creator or admin)", "sessions",
        replies=(Reply(204, "Deleted; usage rows stay as billing history"),),
        description="Participants, segments and the job are deleted. Usage rows are kept, "
        "detached from the session, so space and user usage reports do not change.",
    ),
    Operation(
        "GET", f"{_S}/token", join_token, "getJoinToken", "LiveKit join token for the caller",
        "sessions", replies=(Reply(200, "Token, server URL and room", JoinTokenOut),),
        query=TokenQuery, errors=(403, 409, 503),
        description="Short-lived (API_JOIN_TOKEN_TTL_MINUTES): to join again after expires_at, "
        "ask again; an ended session gives no token (409). The identity is the caller's user id; "
        "reserved ids (the bot's, service) are refused (403 reserved_identity). speak=false gives "
        "a listen-only token; no token carries roomAdmin.",
    ),
    Operation(
        "POST", f"{_S}/participants/join", register_participant, "registerParticipant",
        "Register the caller as a participant: session LIVE, transcription requested", "sessions",
        replies=(Reply(200, "The participant and the session", JoinOut),),
        body=ParticipantJoin, errors=(409,),
    ),
    Operation(
        "GET", f"{_S}/participants", list_participants, "listParticipants",
        "The session's participants (?active=true: those in the room now)", "sessions",
        replies=(Reply(200, "Participants in join order", ParticipantList),),
        query=ParticipantListQuery,
    ),
    Operation(
        "GET", "/api/space/settings", get_space_settings, "getSpaceSettings",
        "The caller's space settings", "spaces",
        replies=(Reply(200, "The settings (defaults when never set)", SpaceSettingsOut),),
    ),
    Operation(
        "PUT", "/api/space/settings", put_space_settings, "setSpaceSettings",
        "Change the caller's space settings (admin)", "spaces",
        replies=(Reply(200, "The settings", SpaceSettingsOut),), body=SpaceSettingsUpdate,
    ),
    Operation(
        "POST", f"{_S}/transcription/start", start_transcription, "startTranscription",
        "Request the bot for this session (limits and quota checked)", "transcription",
        replies=(_SESSION,), errors=(409, 429),
    ),
    Operation(
        "POST", f"{_S}/transcription/stop", stop_transcription, "stopTranscription",
        "Stop the session's transcription", "transcription", replies=(_SESSION,),
    ),
]  # fmt: skip
