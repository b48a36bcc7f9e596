from __future__ import annotations

import datetime as dt
import time

import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from api.auth import Authenticator, ReservedIdentities, Role, issue_user_token
from api.errors import BadRequest, Forbidden, Unauthorized

SECRET = "jwt-secret-for-tests-0123456789abcdef"
KEY = "admin-key-for-tests"


def _auth() -> Authenticator:
    return Authenticator(SECRET, KEY)


def _request(headers: dict[str, str]) -> web.Request:
    return make_mocked_request("GET", "/api/sessions", headers=headers)


def test_user_jwt_gives_user_space_and_role() -> None:
    token = issue_user_token(SECRET, user_id="u1", space_id="s1", role="admin")
    who = _auth().authenticate(_request({"Authorization": f"Bearer {token}"}))
    assert (who.user_id, who.space_id, who.role) == ("u1", "s1", Role.ADMIN)
    assert who.can_see_space("s1") and not who.can_see_space("s2")


def test_admin_key_is_service_and_names_space_and_user_by_headers() -> None:
    for headers in (
        {"Authorization": f"Bearer {KEY}", "X-Space-Id": "s9", "X-User-Id": "bot"},
        {"X-Api-Key": KEY, "X-Space-Id": "s9", "X-User-Id": "bot"},
    ):
        who = _auth().authenticate(_request(headers))
        assert (who.role, who.space_id, who.user_id) == (Role.SERVICE, "s9", "bot")
    bare = _auth().authenticate(_request({"X-Api-Key": KEY}))
    assert bare.can_see_space("anything")
    with pytest.raises(BadRequest):
        bare.require_space()
    with pytest.raises(BadRequest):
        bare.require_user()


def _jwt(claims: dict[str, object], secret: str = SECRET) -> dict[str, str]:
    return {"Authorization": "Bearer " + jwt.encode(claims, secret, algorithm="HS256")}


_GOOD: dict[str, object] = {
    "sub": "u",
    "space": "s",
    "role": "member",
    "exp": int(time.time()) + 600,
}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer "},
        {"Authorization": "Bearer not-a-jwt"},
        {"X-Api-Key": KEY + "x"},
        _jwt(_GOOD, "other-secret-0123456789abcdef0123"),
        _jwt({**_GOOD, "role": "owner"}),
        _jwt({"sub": "u", "role": "member"}),
        _jwt({**_GOOD, "sub": ""}),
        _jwt({**_GOOD, "space": 5}),
        _jwt({**_GOOD, "exp": int(time.time()) - 10}),
        _jwt({k: v for k, v in _GOOD.items() if k != "exp"}),  # never expires: refused
        _jwt({**_GOOD, "iat": int(time.time()), "exp": int(time.time()) + 25 * 3600}),
        _jwt({**_GOOD, "exp": int(time.time()) + 25 * 3600}),  # no iat: from now
        {"Authorization": "Bearer " + jwt.encode(_GOOD, "", algorithm="none")},
    ],
)
def test_bad_credentials_are_401(headers: dict[str, str]) -> None:
    with pytest.raises(Unauthorized):
        _auth().authenticate(_request(headers))


def test_unconfigured_credentials_are_refused() -> None:
    token = issue_user_token(SECRET, user_id="u1", space_id="s1")
    with pytest.raises(Unauthorized):
        Authenticator(None, None).authenticate(_request({"Authorization": f"Bearer {token}"}))
    with pytest.raises(Unauthorized):
        Authenticator(None, None).authenticate(_request({"X-Api-Key": ""}))


def test_role_order() -> None:
    token = issue_user_token(SECRET, user_id="u1", space_id="s1", role="member")
    who = _auth().authenticate(_request({"Authorization": f"Bearer {token}"}))
    who.require(Role.MEMBER)
    with pytest.raises(Forbidden):
        who.require(Role.ADMIN)


def test_bad_acting_header_is_400() -> None:
    with pytest.raises(BadRequest):
        _auth().authenticate(_request({"X-Api-Key": KEY, "X-Space-Id": "x" * 500}))


def test_reserved_identities_are_refused_as_users() -> None:
    auth = Authenticator(SECRET, KEY, reserved=ReservedIdentities(["service", "transcriber"]))
    for sub in ("service", "transcriber", "TRANSCRIBER"):
        token = issue_user_token(SECRET, user_id=sub, space_id="s1", role="admin")
        with pytest.raises(Forbidden) as refused:
            auth.authenticate(_request({"Authorization": f"Bearer {token}"}))
        assert refused.value.code == "reserved_identity"
        with pytest.raises(Forbidden):
            auth.authenticate(_request({"X-Api-Key": KEY, "X-User-Id": sub}))
    token = issue_user_token(SECRET, user_id="transcriber2", space_id="s1")
    assert auth.authenticate(_request({"Authorization": f"Bearer {token}"})).user_id == (
        "transcriber2"
    )


def test_jwt_lifetime_bound_is_configurable() -> None:
    now = int(time.time())
    week = _jwt({**_GOOD, "iat": now, "exp": now + 7 * 86400})
    with pytest.raises(Unauthorized):
        _auth().authenticate(_request(week))
    long_lived = Authenticator(SECRET, KEY, jwt_max_ttl=dt.timedelta(days=8))
    assert long_lived.authenticate(_request(week)).user_id == "u"
