"""The API's edge to LiveKit: join tokens and signed webhooks (livekit-api, no room connection)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import jwt
from google.protobuf.json_format import ParseError
from livekit.api import AccessToken, TokenVerifier, VideoGrants, WebhookReceiver
from livekit.protocol.models import ParticipantInfo

from api.auth import ReservedIdentities
from api.errors import BadRequest, ServiceUnavailable, Unauthorized

# webhook tokens verify this long after their exp (livekit-api's default leeway, made explicit)
WEBHOOK_LEEWAY = dt.timedelta(minutes=1)

# participant kinds that are people (or carry a person's audio) and so are transcribed
_COUNTED_KINDS = frozenset(
    {ParticipantInfo.Kind.STANDARD, ParticipantInfo.Kind.SIP, ParticipantInfo.Kind.INGRESS}
)


@dataclass(frozen=True, slots=True)
class WebhookParticipant:
    identity: str
    name: str
    sid: str
    is_person: bool  # False for agents (our bot), egress and other machinery
    # a client with a token (ours carry the user id as identity), not SIP or ingress
    is_standard: bool


@dataclass(frozen=True, slots=True)
class WebhookNotice:
    """The part of a LiveKit webhook event the API acts on."""

    event_id: str
    event: str
    room_name: str
    created_at: dt.datetime
    participant: WebhookParticipant | None
    # until then the signed request verifies, so a replay of it must be recognised
    signature_expires_at: dt.datetime


class LiveKitGateway:
    def __init__(
        self,
        url: str,
        api_key: str | None,
        api_secret: str | None,
        *,
        token_ttl: dt.timedelta = dt.timedelta(minutes=10),
        reserved: ReservedIdentities | None = None,
    ) -> None:
        self.url = url
        self._api_key = api_key or None
        self._api_secret = api_secret or None
        self.token_ttl = token_ttl
        self._reserved = reserved or ReservedIdentities([])
        self._receiver = (
            WebhookReceiver(TokenVerifier(self._api_key, self._api_secret, leeway=WEBHOOK_LEEWAY))
            if self._api_key and self._api_secret
            else None
        )

    def join_token(
        self, *, room: str, identity: str, name: str, can_publish: bool, ttl: dt.timedelta
    ) -> str:
        """An AccessToken to join ``room`` for ``ttl``: subscribe and data for everyone, media
        publishing only when ``can_publish``, never ``roomAdmin`` (moderation goes through
        LiveKit's server API with the API key, not through a participant's token). A reserved
        identity (the bot's) is refused: LiveKit would drop the bot for the newcomer."""
        if self._api_key is None or self._api_secret is None:
            raise ServiceUnavailable(
                "LIVEKIT_API_KEY / LIVEKIT_API_SECRET are not configured",
                code="livekit_not_configured",
            )
        self._reserved.refuse(identity)
        grants = VideoGrants(
            room_join=True,
            room=room,
            can_publish=can_publish,
            can_subscribe=True,
            can_publish_data=True,
        )
        token = (
            AccessToken(self._api_key, self._api_secret)
            .with_identity(identity)
            .with_name(name or identity)
            .with_grants(grants)
            .with_ttl(ttl)
        )
        return token.to_jwt()

    def receive(self, body: bytes, authorization: str | None) -> WebhookNotice:
        """Verify signature and body hash, then parse; any doubt about the sender is a 401."""
        if self._receiver is None or not authorization:
            raise Unauthorized("webhook is not signed")
        token = authorization.removeprefix("Bearer ").strip()
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise Unauthorized("webhook signature does not match") from exc
        try:
            event = self._receiver.receive(text, token)
        except ParseError as exc:
            raise BadRequest("webhook body is not a LiveKit event") from exc
        except Exception as exc:  # jwt errors, "hash mismatch", bad base64: all mean "not LiveKit"
            raise Unauthorized("webhook signature does not match") from exc
        participant = None
        if event.HasField("participant") and event.participant.identity:
            p = event.participant
            participant = WebhookParticipant(
                identity=p.identity,
                name=p.name,
                sid=p.sid,
                is_person=p.kind in _COUNTED_KINDS,
                is_standard=p.kind == ParticipantInfo.Kind.STANDARD,
            )
        created = (
            dt.datetime.fromtimestamp(event.created_at, dt.UTC)
            if 0 < event.created_at < 32_503_680_000  # before year 3000
            else dt.datetime.now(dt.UTC)
        )
        return WebhookNotice(
            signature_expires_at=_signature_expiry(token),
            event_id=event.id,
            event=event.event,
            room_name=event.room.name,
            created_at=created,
            participant=participant,
        )


def _signature_expiry(token: str) -> dt.datetime:
    """When a verified webhook token stops verifying: its ``exp`` (the verifier requires one)
    plus the verifier's leeway."""
    exp = jwt.decode(token, options={"verify_signature": False})["exp"]
    return dt.datetime.fromtimestamp(exp, dt.UTC) + WEBHOOK_LEEWAY
