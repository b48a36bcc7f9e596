"""Who is calling: user JWTs and the service admin key.

Two kinds of credentials, both in ``Authorization: Bearer <credential>``:

* a **user JWT** signed HS256 with ``API_JWT_SECRET``, claims ``sub`` (user id), ``space``
  (workspace id), ``role`` (``member`` or ``admin``) and ``exp`` (required; ``nbf`` is checked
  when present). A lifetime (``exp - iat``, or ``exp - now`` without ``iat``) longer than
  ``API_JWT_MAX_TTL_MINUTES`` is refused. The caller sees its own space only.
* the **admin key** ``API_ADMIN_KEY`` (also accepted as ``X-Api-Key: <key>``), compared in
  constant time, for service-to-service calls. It acts across spaces with the role ``service``
  (everything an ``admin`` may do). Because it names no user or space itself, the caller says on
  whose behalf it acts with two headers: ``X-Space-Id`` (required by operations that work inside a
  space: create/list sessions, the space usage report; optional elsewhere, and when given a session
  of another space is a 404 as for users) and ``X-User-Id`` (the identity for join tokens and
  participant registration; sessions it creates are owned by that user, or by nobody).

**Reserved identities**: ``service`` and the bot's participant identity (``BOT_IDENTITY``) belong
to the product. No user may be one of them, compared case-insensitively: a JWT whose ``sub`` is
one, or an ``X-User-Id`` naming one, is a 403 ``reserved_identity``. So no join token can carry
the bot's identity (LiveKit would drop the bot from the room for the newcomer).

Missing or wrong credentials are 401, a role too low for the operation is 403.
"""

from __future__ import annotations

import datetime as dt
import enum
import hmac
import time
from collections.abc import Iterable
from dataclasses import dataclass

import jwt
from aiohttp import web

from api.errors import BadRequest, Forbidden, Unauthorized
from store.models import SPACE_ID_LEN, USER_ID_LEN

SERVICE_USER = "service"


class Role(enum.IntEnum):
    """Roles in increasing power; comparisons mean "at least"."""

    MEMBER = 1
    ADMIN = 2
    SERVICE = 3


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller of one request."""

    role: Role
    user_id: str | None
    space_id: str | None

    @property
    def is_service(self) -> bool:
        return self.role is Role.SERVICE

    def require(self, role: Role) -> None:
        if self.role < role:
            raise Forbidden(f"this operation needs the {role.name.lower()} role")

    def require_space(self) -> str:
        """The space the request acts in; the admin key must name it with ``X-Space-Id``."""
        if self.space_id is None:
            raise BadRequest(
                "the admin key must name a space with X-Space-Id", code="space_required"
            )
        return self.space_id

    def require_user(self) -> str:
        """The user the request acts for; the admin key must name it with ``X-User-Id``."""
        if self.user_id is None:
            raise BadRequest("the admin key must name a user with X-User-Id", code="user_required")
        return self.user_id

    def can_see_space(self, space_id: str) -> bool:
        return self.space_id is None or self.space_id == space_id


class ReservedIdentities:
    """Participant identities no user may take (compared case-insensitively)."""

    def __init__(self, identities: Iterable[str]) -> None:
        self._folded = frozenset(i.casefold() for i in identities)

    def __contains__(self, identity: object) -> bool:
        return isinstance(identity, str) and identity.casefold() in self._folded

    def refuse(self, identity: str | None) -> None:
        if identity in self:
            raise Forbidden("this user id is reserved", code="reserved_identity")


DEFAULT_JWT_MAX_TTL = dt.timedelta(hours=24)
_JWT_TTL_LEEWAY_S = 60  # the issuer's clock and ours differ: a lifetime may look this much longer


class Authenticator:
    """Checks credentials of one request; built once per app from the settings."""

    def __init__(
        self,
        jwt_secret: str | None,
        admin_key: str | None,
        *,
        reserved: ReservedIdentities | None = None,
        jwt_max_ttl: dt.timedelta = DEFAULT_JWT_MAX_TTL,
    ) -> None:
        self._jwt_secret = jwt_secret or None
        self._admin_key = admin_key.encode() if admin_key else None
        self.reserved = reserved or ReservedIdentities([SERVICE_USER])
        self._jwt_max_ttl_s = jwt_max_ttl.total_seconds()

    def authenticate(self, request: web.Request) -> Principal:
        credential = self._credential(request)
        if credential is None:
            raise Unauthorized("missing credentials")
        if self._is_admin_key(credential):
            user_id = _header_id(request, "X-User-Id", USER_ID_LEN)
            self.reserved.refuse(user_id)
            return Principal(
                role=Role.SERVICE,
                user_id=user_id,
                space_id=_header_id(request, "X-Space-Id", SPACE_ID_LEN),
            )
        found = self._decode_jwt(credential)
        self.reserved.refuse(found.user_id)
        return found

    @staticmethod
    def _credential(request: web.Request) -> str | None:
        api_key = request.headers.get("X-Api-Key")
        if api_key:
            return api_key
        header = request.headers.get("Authorization")
        if not header:
            return None
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise Unauthorized("expected Authorization: Bearer <token>")
        return value.strip()

    def _is_admin_key(self, credential: str) -> bool:
        if self._admin_key is None:
            return False
        return hmac.compare_digest(credential.encode("utf-8", "surrogateescape"), self._admin_key)

    def _decode_jwt(self, token: str) -> Principal:
        if self._jwt_secret is None:
            raise Unauthorized("invalid credentials")
        try:
            claims = jwt.decode(
                token,
                self._jwt_secret,
                algorithms=["HS256"],
                options={"require": ["sub", "space", "role", "exp"]},
            )
        except jwt.PyJWTError as exc:
            raise Unauthorized("invalid or expired token") from exc
        exp, iat = claims["exp"], claims.get("iat")
        issued = iat if isinstance(iat, int | float) else time.time()
        if exp - issued > self._jwt_max_ttl_s + _JWT_TTL_LEEWAY_S:
            raise Unauthorized("token lifetime is longer than allowed")
        sub, space, role = claims.get("sub"), claims.get("space"), claims.get("role")
        valid = _valid_id(sub, USER_ID_LEN) and _valid_id(space, SPACE_ID_LEN)
        if not valid or role not in ("member", "admin"):
            raise Unauthorized("token claims are invalid")
        assert isinstance(sub, str) and isinstance(space, str)
        return Principal(
            role=Role.ADMIN if role == "admin" else Role.MEMBER, user_id=sub, space_id=space
        )


def _valid_id(value: object, max_length: int) -> bool:
    return isinstance(value, str) and 0 < len(value) <= max_length and value.isprintable()


def _header_id(request: web.Request, name: str, max_length: int) -> str | None:
    value = request.headers.get(name)
    if value is None or value == "":
        return None
    if not _valid_id(value, max_length):
        raise BadRequest(f"{name} must be 1-{max_length} printable characters")
    return value


def issue_user_token(
    secret: str, *, user_id: str, space_id: str, role: str = "member", ttl_seconds: int = 3600
) -> str:
    """A user JWT as the product's identity provider would mint it (tests, the demo, tools)."""
    now = int(time.time())
    claims = {"sub": user_id, "space": space_id, "role": role, "iat": now, "exp": now + ttl_seconds}
    return jwt.encode(claims, secret, algorithm="HS256")
