"""Token verification and the grants it yields."""

from __future__ import annotations

import time

import jwt
import pytest
from livekit import api
from livekit.protocol import models

from devserver.auth import TokenVerifier, bearer_token, grants_from_claims, join_room_name
from devserver.errors import AuthError

KEY = "devkey"
SECRET = "unit-test-secret-0123456789abcdef0123"
VERIFIER = TokenVerifier({KEY: SECRET})


def sign(claims: dict[str, object], *, secret: str = SECRET, key: str = KEY) -> str:
    now = int(time.time())
    return jwt.encode({"iss": key, "nbf": now - 5, "exp": now + 60, **claims}, secret, "HS256")


def test_sdk_token_grants_are_read() -> None:
    token = (
        api.AccessToken(KEY, SECRET)
        .with_identity("transcriber")
        .with_name("Captions")
        .with_kind("agent")
        .with_grants(api.VideoGrants(room_join=True, room="r1", hidden=True, can_publish=False))
        .to_jwt()
    )
    grants = VERIFIER.verify(token)
    assert (grants.identity, grants.name, grants.room) == ("transcriber", "Captions", "r1")
    assert grants.room_join and grants.hidden and grants.is_agent and grants.is_dependent
    assert grants.kind == models.ParticipantInfo.AGENT
    assert not grants.can_publish and grants.can_subscribe and grants.can_publish_data


def test_absent_publish_grants_default_to_allowed() -> None:
    grants = grants_from_claims({"sub": "a", "video": {"roomJoin": True, "room": "r"}})
    assert grants.can_publish and grants.can_subscribe and grants.can_publish_data
    assert not grants.is_agent and not grants.hidden


def test_publish_sources_restrict_what_may_be_published() -> None:
    grants = grants_from_claims({"video": {"canPublishSources": ["microphone"]}})
    assert grants.may_publish_source(models.TrackSource.MICROPHONE)
    assert not grants.may_publish_source(models.TrackSource.CAMERA)


@pytest.mark.parametrize(
    ("token", "message"),
    [
        (sign({"sub": "a"}, secret="another-secret-0123456789abcdef0123"), "signature is invalid"),
        (sign({"sub": "a", "exp": int(time.time()) - 300}), "token is expired"),
        (sign({"sub": "a"}, key="nobody"), "invalid API key"),
        (jwt.encode({"iss": KEY, "sub": "a"}, SECRET, "HS256"), "no expiry"),
        ("not.a.jwt", "not a JWT"),
        (jwt.encode({"sub": "a", "exp": int(time.time()) + 60}, SECRET, "HS256"), "no issuer"),
    ],
)
def test_refusals_explain_themselves(token: str, message: str) -> None:
    with pytest.raises(AuthError) as caught:
        VERIFIER.verify(token)
    assert caught.value.status == 401
    assert message in caught.value.message
    assert SECRET not in caught.value.message


def test_join_room_name_rules() -> None:
    joiner = grants_from_claims({"sub": "a", "video": {"roomJoin": True, "room": "r1"}})
    assert join_room_name(joiner, None) == "r1"
    assert join_room_name(joiner, "r1") == "r1"
    with pytest.raises(AuthError, match="grants room 'r1', not the requested room 'r2'"):
        join_room_name(joiner, "r2")
    roomless = grants_from_claims({"sub": "a", "video": {"roomJoin": True}})
    assert join_room_name(roomless, "r3") == "r3"
    with pytest.raises(AuthError, match="no room name"):
        join_room_name(roomless, None)
    with pytest.raises(AuthError, match="no roomJoin grant"):
        join_room_name(grants_from_claims({"sub": "a", "video": {"room": "r1"}}), None)
    with pytest.raises(AuthError, match="identity cannot be empty"):
        join_room_name(grants_from_claims({"video": {"roomJoin": True, "room": "r1"}}), None)


def test_bearer_token_sources() -> None:
    assert bearer_token("Bearer abc", None) == "abc"
    assert bearer_token(None, "xyz") == "xyz"
    with pytest.raises(AuthError, match="Bearer"):
        bearer_token("Basic abc", None)
    with pytest.raises(AuthError, match="no access token"):
        bearer_token(None, None)
