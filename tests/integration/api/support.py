"""Credentials, signed webhooks and data seeding for the API tests."""

from __future__ import annotations

import base64
import hashlib
import time
import uuid
from decimal import Decimal

from aiohttp import ClientResponse
from google.protobuf.json_format import MessageToJson
from livekit.api import AccessToken
from livekit.protocol.models import ParticipantInfo, Room
from livekit.protocol.webhook import WebhookEvent

from api.auth import issue_user_token
from store.records import FinalSegment, SessionRecord, UsageCheckpoint
from store.stores import Store

JWT_SECRET = "integration-jwt-secret-0123456789abcdef"
ADMIN_KEY = "integration-admin-key-0123456789"
LIVEKIT_KEY = "APIintegration"
LIVEKIT_SECRET = "integration-livekit-secret-0123456789abcdef"


async def error_of(response: ClientResponse) -> tuple[int, str]:
    """Status and code of an error response, checking the body is the one error shape."""
    body = await response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    return response.status, str(body["error"]["code"])


def user(sub: str, space: str = "space-a", role: str = "member") -> dict[str, str]:
    token = issue_user_token(JWT_SECRET, user_id=sub, space_id=space, role=role)
    return {"Authorization": f"Bearer {token}"}


def admin(space: str | None = None, user_id: str | None = None) -> dict[str, str]:
    headers = {"X-Api-Key": ADMIN_KEY}
    if space is not None:
        headers["X-Space-Id"] = space
    if user_id is not None:
        headers["X-User-Id"] = user_id
    return headers


def webhook(
    event: str,
    room: str,
    identity: str = "",
    *,
    name: str = "",
    kind: int = ParticipantInfo.Kind.STANDARD,
    event_id: str | None = None,
    created_at: int | None = None,
    secret: str = LIVEKIT_SECRET,
) -> tuple[bytes, dict[str, str]]:
    """A LiveKit webhook body and its headers, signed like livekit-server signs them; every
    event gets its own id unless ``event_id`` names one."""
    message = WebhookEvent(
        event=event,
        room=Room(name=room),
        id=event_id if event_id is not None else f"EV_{uuid.uuid4().hex}",
        created_at=created_at if created_at is not None else int(time.time()),
    )
    if identity:
        message.participant.CopyFrom(
            ParticipantInfo(identity=identity, name=name, kind=kind)  # type: ignore[arg-type]
        )
    body = MessageToJson(message).encode()
    digest = base64.b64encode(hashlib.sha256(body).digest()).decode()
    token = AccessToken(LIVEKIT_KEY, secret).with_sha256(digest).to_jwt()
    return body, {"Authorization": token, "Content-Type": "application/webhook+json"}


async def seed_transcript(
    repo: Store, session: SessionRecord, lines: list[tuple[str, str, int, int, str]]
) -> None:
    """``lines``: (identity, display name, start_ms, end_ms, text); participants joined first."""
    for identity, name in {(i, n) for i, n, *_ in lines}:
        await repo.sessions.participant_joined(session.id, identity, name=name, user_id=identity)
    await repo.transcripts.upsert_final_segments(
        [
            FinalSegment(
                session_id=session.id,
                utterance_id=f"u{n}",
                track_sid=f"TR_{identity}",
                text=text,
                start_ms=start,
                end_ms=end,
                participant_identity=identity,
                language="ru",
            )
            for n, (identity, _, start, end, text) in enumerate(lines)
        ]
    )


async def seed_usage(
    repo: Store,
    session: SessionRecord,
    identity: str,
    seconds: str,
    *,
    track_sid: str | None = None,
    price: str = "0.01",
    close: bool = True,
) -> None:
    """One transcribed track of ``identity`` with ``seconds`` of audio."""
    await repo.sessions.participant_joined(
        session.id, identity, name=identity.title(), user_id=identity
    )
    sid = track_sid or f"TR_{identity}"
    await repo.usage.open_track_usage(
        session_id=session.id,
        participant_identity=identity,
        track_sid=sid,
        model="base",
        cost_per_minute=Decimal(price),
    )
    await repo.usage.checkpoint_usage(
        [
            UsageCheckpoint(
                session_id=session.id,
                track_sid=sid,
                audio_seconds=Decimal(seconds),
                speech_seconds=Decimal(seconds) / 2,
                final_count=3,
                ended=close,
            )
        ]
    )
