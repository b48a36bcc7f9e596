"""The space's retention policy (admins): how long transcripts are kept after a session ends,
and track recordings (the audio kept for the after-meeting diarization) after they are made.

The purge itself runs in the sweeper (``api.sweeper.purge_once``, ``store.retention``).
"""

from __future__ import annotations

from aiohttp import web

from api.auth import Role
from api.context import context, principal
from api.http import json_model, parse_body
from api.openapi import Operation, Reply
from api.schemas import RetentionOut, RetentionUpdate


async def get_retention(request: web.Request) -> web.Response:
    who = principal(request)
    who.require(Role.ADMIN)
    space_id = who.require_space()
    store = context(request).store.retention
    days = await store.policy(space_id)
    recording_days = await store.recording_policy(space_id)
    return json_model(
        RetentionOut(space_id=space_id, transcript_days=days, recording_days=recording_days)
    )


async def put_retention(request: web.Request) -> web.Response:
    who = principal(request)
    who.require(Role.ADMIN)
    space_id = who.require_space()
    body = await parse_body(request, RetentionUpdate)
    store = context(request).store.retention
    await store.set_policy(space_id, body.transcript_days, recording_days=body.recording_days)
    return json_model(
        RetentionOut(
            space_id=space_id,
            transcript_days=body.transcript_days,
            recording_days=body.recording_days,
        )
    )


OPERATIONS = [
    Operation(
        "GET", "/api/retention", get_retention, "getRetention",
        "The space's retention policy (admins)", "retention",
        replies=(Reply(200, "The policy", RetentionOut),),
    ),
    Operation(
        "PUT", "/api/retention", put_retention, "setRetention",
        "Set how long the space keeps transcripts and track recordings (admins)", "retention",
        replies=(Reply(200, "The policy", RetentionOut),), body=RetentionUpdate,
    ),
]  # fmt: skip
