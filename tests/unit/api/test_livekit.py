from __future__ import annotations

import base64
import datetime as dt
import hashlib
import time

import jwt
import pytest
from google.protobuf.json_format import MessageToJson
from livekit.api import AccessToken, TokenVerifier
from livekit.protocol.models import ParticipantInfo, Room
from livekit.protocol.webhook import WebhookEvent

from api.auth import ReservedIdentities
from api.errors import BadRequest, Forbidden, ServiceUnavailable, Unauthorized
from api.livekit import LiveKitGateway

KEY, SECRET = "devkey", "devsecret-devsecret-devsecret-0123"


def signed(body: bytes, key: str = KEY, secret: str = SECRET) -> str:
    digest = base64.b64encode(hashlib.sha256(body).digest()).decode()
    return AccessToken(key, secret).with_sha256(digest).to_jwt()


def event_body(event: str, room: str, identity: str = "", kind: int = 0) -> bytes:
    message = WebhookEvent(event=event, room=Room(name=room), id="EV_1", created_at=1_700_000_000)
    if identity:
        message.participant.CopyFrom(ParticipantInfo(identity=identity, name="Иван", kind=kind))  # type: ignore[arg-type]
    return MessageToJson(message).encode()


def test_join_token_is_scoped_and_short_lived() -> None:
    gateway = LiveKitGateway("ws://lk", KEY, SECRET)
    ttl = dt.timedelta(minutes=10)
    token = gateway.join_token(room="r-1", identity="u1", name="Иван", can_publish=True, ttl=ttl)
    speaker = TokenVerifier(KEY, SECRET).verify(token)
    assert speaker.identity == "u1" and speaker.name == "Иван"
    assert speaker.video is not None
    assert speaker.video.room == "r-1" and speaker.video.room_join and speaker.video.can_publish
    assert not speaker.video.room_admin  # nobody's join token administers the room
    exp = jwt.decode(token, options={"verify_signature": False})["exp"]
    assert exp - time.time() <= ttl.total_seconds() + 1
    listener = TokenVerifier(KEY, SECRET).verify(
        gateway.join_token(room="r-1", identity="a", name="", can_publish=False, ttl=ttl)
    )
    assert listener.video is not None and listener.video.can_subscribe
    assert not listener.video.can_publish and not listener.video.room_admin


def test_join_token_refuses_a_reserved_identity() -> None:
    gateway = LiveKitGateway(
        "ws://lk", KEY, SECRET, reserved=ReservedIdentities(["service", "transcriber"])
    )
    for identity in ("transcriber", "Transcriber", "service"):
        with pytest.raises(Forbidden):
            gateway.join_token(
                room="r", identity=identity, name="", can_publish=True, ttl=dt.timedelta(minutes=1)
            )


def test_join_token_without_livekit_credentials_is_503() -> None:
    with pytest.raises(ServiceUnavailable):
        LiveKitGateway("ws://lk", None, None).join_token(
            room="r", identity="u", name="", can_publish=True, ttl=dt.timedelta(minutes=1)
        )


def test_webhook_verified_and_parsed() -> None:
    body = event_body("participant_joined", "room-1", "alice")
    notice = LiveKitGateway("ws://lk", KEY, SECRET).receive(body, signed(body))
    assert (notice.event, notice.room_name, notice.event_id) == (
        "participant_joined",
        "room-1",
        "EV_1",
    )
    assert notice.participant is not None and notice.participant.is_person
    assert notice.created_at.timestamp() == 1_700_000_000
    # a replay must be recognised for as long as this signature verifies
    exp = jwt.decode(signed(body), options={"verify_signature": False})["exp"]
    assert notice.signature_expires_at.timestamp() >= exp + 60


def test_agent_participant_is_not_a_person() -> None:
    body = event_body("participant_joined", "room-1", "bot", kind=ParticipantInfo.Kind.AGENT)
    notice = LiveKitGateway("ws://lk", KEY, SECRET).receive(body, "Bearer " + signed(body))
    assert notice.participant is not None and not notice.participant.is_person


@pytest.mark.parametrize("case", ["no_header", "wrong_secret", "wrong_key", "tampered", "junk"])
def test_webhook_bad_signature_is_401(case: str) -> None:
    body = event_body("room_finished", "room-1")
    header: str | None = {
        "no_header": None,
        "wrong_secret": signed(body, secret="another-secret-another-secret-0000"),
        "wrong_key": signed(body, key="otherkey"),
        "tampered": signed(body + b" "),
        "junk": "not.a.jwt",
    }[case]
    with pytest.raises(Unauthorized):
        LiveKitGateway("ws://lk", KEY, SECRET).receive(body, header)


def test_webhook_without_configured_keys_is_401() -> None:
    body = event_body("room_finished", "room-1")
    with pytest.raises(Unauthorized):
        LiveKitGateway("ws://lk", None, None).receive(body, signed(body))


def test_signed_body_that_is_not_an_event_is_400() -> None:
    body = b"[1, 2"
    with pytest.raises(BadRequest):
        LiveKitGateway("ws://lk", KEY, SECRET).receive(body, signed(body))


def test_non_utf8_body_is_401() -> None:
    body = b"\xff\xfe"
    with pytest.raises(Unauthorized):
        LiveKitGateway("ws://lk", KEY, SECRET).receive(body, signed(body))
