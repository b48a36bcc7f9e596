from __future__ import annotations

import base64
import hashlib

import pytest
from google.protobuf.json_format import MessageToJson
from livekit.api import AccessToken, TokenVerifier
from livekit.protocol.models import ParticipantInfo, Room
from livekit.protocol.webhook import WebhookEvent

from api.auth import Role
from api.errors import BadRequest, ServiceUnavailable, Unauthorized
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


def test_join_token_carries_identity_room_and_role_grants() -> None:
    gateway = LiveKitGateway("ws://lk", KEY, SECRET)
    member = TokenVerifier(KEY, SECRET).verify(
        gateway.join_token(room="r-1", identity="u1", name="Иван", role=Role.MEMBER)
    )
    assert member.identity == "u1" and member.name == "Иван"
    assert member.video is not None
    assert member.video.room == "r-1" and member.video.room_join and member.video.can_publish
    assert not member.video.room_admin
    admin = TokenVerifier(KEY, SECRET).verify(
        gateway.join_token(room="r-1", identity="a", name="", role=Role.ADMIN)
    )
    assert admin.video is not None and admin.video.room_admin


def test_join_token_without_livekit_credentials_is_503() -> None:
    with pytest.raises(ServiceUnavailable):
        LiveKitGateway("ws://lk", None, None).join_token(
            room="r", identity="u", name="", role=Role.MEMBER
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
