"""LiveKit webhooks: ``POST /webhooks/livekit``.

Verified with livekit-api's ``WebhookReceiver`` (JWT signed with the LiveKit API secret, carrying
the body's sha256): a bad signature or body hash is a 401 and nothing changes. The room name is
the session slug. Handled events:

* ``participant_joined``: participant upsert (the first join turns the session LIVE) and a
  transcription request (limits permitting). Agents (our bot), egress and other machinery are
  neither participants nor a reason to transcribe.
* ``participant_left``: ``left_at``.
* ``room_finished``: the session ENDS; its job stops and open usage closes.

Everything else, unknown rooms and rooms of ended sessions are acknowledged (200) and ignored, so
LiveKit does not retry them.

**Replays.** Each event id is remembered (``store.livekit_events``, a unique key) until the
request's signature expires; a second delivery of an id within that time is acknowledged with
``200 {"outcome": "duplicate"}`` and does nothing. A failed handling forgets the id, so LiveKit's
retry is handled. An event without an id cannot be told from its replay: 400. Writes are also
upserts keyed by session and identity with the event's own times, and a join older than the
participant's recorded leave is ignored as stale, so even a late redelivery changes nothing.
"""

from __future__ import annotations

import logging

from aiohttp import web
from pydantic import BaseModel

from api import transcription
from api.context import ApiContext, context
from api.errors import BadRequest
from api.livekit import WebhookNotice
from api.openapi import Operation, Reply
from api.routes.common import ACTIVE, SLUG_RE
from store.models import IDENTITY_LEN, NAME_LEN, USER_ID_LEN, WEBHOOK_EVENT_ID_LEN

logger = logging.getLogger("api")


class WebhookAck(BaseModel):
    event: str
    outcome: str


class WebhookEventIn(BaseModel):
    """A LiveKit ``WebhookEvent`` in protobuf JSON (only the fields the API reads)."""

    event: str
    id: str | None = None
    createdAt: str | int | None = None  # LiveKit's own (camelCase) field name


def _clean(value: str, limit: int) -> str:
    return value.replace("\x00", "")[:limit]


_HANDLED = frozenset({"participant_joined", "participant_left", "room_finished"})


async def _handle(ctx: ApiContext, notice: WebhookNotice) -> str:
    if notice.event not in _HANDLED:
        return "ignored"
    if not SLUG_RE.match(notice.room_name):
        return "unknown_room"
    found = await ctx.store.sessions.get_session_with_job(notice.room_name)
    if found is None:
        return "unknown_room"
    session, job = found
    repo = ctx.store
    when = notice.created_at

    if notice.event == "room_finished":
        await repo.sessions.end_session(session.id, reason="room_finished", now=when)
        return "session_ended"

    person = notice.participant
    if person is None or not person.is_person:
        return "not_a_person"
    identity = _clean(person.identity, IDENTITY_LEN)
    if not identity:
        return "not_a_person"

    if notice.event == "participant_left":
        left = await repo.sessions.participant_left(session.id, identity, now=when)
        return "left" if left is not None else "unknown_participant"

    # participant_joined
    if session.status not in ACTIVE:
        return "session_over"
    known = {p.identity: p for p in await repo.sessions.list_participants(session.id)}
    previous = known.get(identity)
    if previous is not None and previous.left_at is not None and previous.left_at > when:
        return "stale"
    # join tokens from this API carry the user id as identity; SIP/ingress identities are not users
    user_id = identity if person.is_standard and len(identity) <= USER_ID_LEN else None
    await repo.sessions.participant_joined(
        session.id, identity, name=_clean(person.name, NAME_LEN) or None, user_id=user_id, now=when
    )
    _, refused = await transcription.on_join(repo, session, job, limits=ctx.limits, user_id=user_id)
    return f"joined_{refused}" if refused else "joined"


async def livekit_webhook(request: web.Request) -> web.Response:
    ctx = context(request)
    body = await request.read()
    try:
        notice = ctx.livekit.receive(body, request.headers.get("Authorization"))
    except Exception:
        ctx.metrics.webhooks.labels("unverified", "rejected").inc()
        raise
    if not notice.event_id or len(notice.event_id) > WEBHOOK_EVENT_ID_LEN:
        ctx.metrics.webhooks.labels("unverified", "rejected").inc()
        raise BadRequest("webhook event has no usable id")
    if await ctx.store.livekit_events.remember(
        notice.event_id, expires_at=notice.signature_expires_at
    ):
        try:
            outcome = await _handle(ctx, notice)
        except BaseException:
            await ctx.store.livekit_events.forget(notice.event_id)
            raise
    else:
        outcome = "duplicate"
    event_label = notice.event if notice.event in _HANDLED else "other"
    ctx.metrics.webhooks.labels(event_label, outcome).inc()
    logger.info(
        "livekit webhook", extra={"event": notice.event, "outcome": outcome, "id": notice.event_id}
    )
    return web.json_response({"event": notice.event, "outcome": outcome})


OPERATIONS = [
    Operation(
        "POST", "/webhooks/livekit", livekit_webhook, "livekitWebhook",
        "LiveKit webhook receiver (signed by the LiveKit API secret)", "webhooks",
        replies=(Reply(200, "Acknowledged; outcome says what it did (duplicate: a replayed "
                       "event id, nothing done)", WebhookAck),),
        security="webhook", body=WebhookEventIn, body_media_type="application/webhook+json",
        acting_headers=False,
    ),
]  # fmt: skip
