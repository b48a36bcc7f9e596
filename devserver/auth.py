"""Access tokens: LiveKit JWTs (HS256, ``iss`` = API key) and the grants they carry.

Every refusal is an :class:`AuthError` whose message tells the client what is wrong; the
message never contains the token or a secret.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import jwt
from livekit.protocol import models

from .errors import AuthError

_KINDS: dict[str, int] = {
    "": models.ParticipantInfo.STANDARD,
    "standard": models.ParticipantInfo.STANDARD,
    "ingress": models.ParticipantInfo.INGRESS,
    "egress": models.ParticipantInfo.EGRESS,
    "sip": models.ParticipantInfo.SIP,
    "agent": models.ParticipantInfo.AGENT,
    "connector": models.ParticipantInfo.CONNECTOR,
    "bridge": models.ParticipantInfo.BRIDGE,
}
_SOURCES: dict[str, int] = {
    "camera": models.TrackSource.CAMERA,
    "microphone": models.TrackSource.MICROPHONE,
    "screen_share": models.TrackSource.SCREEN_SHARE,
    "screen_share_audio": models.TrackSource.SCREEN_SHARE_AUDIO,
}


@dataclass(frozen=True, slots=True)
class Grants:
    """What a verified token allows; defaults are LiveKit's for an absent claim."""

    identity: str = ""
    name: str = ""
    metadata: str = ""
    attributes: Mapping[str, str] = field(default_factory=dict)
    kind: int = models.ParticipantInfo.STANDARD
    room: str = ""
    room_join: bool = False
    room_create: bool = False
    room_list: bool = False
    room_admin: bool = False
    can_publish: bool = True
    can_subscribe: bool = True
    can_publish_data: bool = True
    can_publish_sources: tuple[int, ...] = ()  # empty: every source
    can_update_own_metadata: bool = False
    hidden: bool = False
    recorder: bool = False
    agent: bool = False

    @property
    def is_agent(self) -> bool:
        return self.kind == models.ParticipantInfo.AGENT or self.agent

    @property
    def is_dependent(self) -> bool:
        """Agents and egress follow a room; they do not keep it open on their own."""
        return self.is_agent or self.kind == models.ParticipantInfo.EGRESS or self.recorder

    def may_publish_source(self, source: int) -> bool:
        return self.can_publish and (
            not self.can_publish_sources or source in self.can_publish_sources
        )

    def permission(self) -> models.ParticipantPermission:
        return models.ParticipantPermission(
            can_subscribe=self.can_subscribe,
            can_publish=self.can_publish,
            can_publish_data=self.can_publish_data,
            can_publish_sources=list(self.can_publish_sources),  # type: ignore[arg-type]
            hidden=self.hidden,
            recorder=self.recorder,
            can_update_metadata=self.can_update_own_metadata,
            agent=self.agent,
        )


class TokenVerifier:
    """Verifies tokens signed with one of the configured API key/secret pairs."""

    def __init__(self, keys: Mapping[str, str], *, leeway_s: float = 10.0) -> None:
        self._keys = dict(keys)
        self._leeway_s = leeway_s

    def verify(self, token: str) -> Grants:
        return grants_from_claims(self.verify_claims(token))

    def refreshed(self, claims: Mapping[str, Any], *, ttl_s: int) -> str:
        """The same claims with a fresh expiry, signed again (LiveKit's token refresh)."""
        now = int(time.time())
        secret = self._keys[str(claims["iss"])]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", jwt.warnings.InsecureKeyLengthWarning)
            return jwt.encode(
                {**claims, "nbf": now - 1, "exp": now + ttl_s}, secret, algorithm="HS256"
            )

    def verify_claims(self, token: str) -> dict[str, Any]:
        """The claims of a token signed with a known key, or an :class:`AuthError`."""
        try:
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise AuthError(401, "invalid authorization token: not a JWT") from None
        api_key = unverified.get("iss")
        if not isinstance(api_key, str) or not api_key:
            raise AuthError(401, "invalid authorization token: no issuer (API key)")
        secret = self._keys.get(api_key)
        if secret is None:
            raise AuthError(401, "invalid API key: this server does not know the token's key")
        try:
            with warnings.catch_warnings():
                # the dev secret is short on purpose, like `livekit-server --dev`
                warnings.simplefilter("ignore", jwt.warnings.InsecureKeyLengthWarning)
                claims = jwt.decode(
                    token,
                    key=secret,
                    algorithms=["HS256"],
                    issuer=api_key,
                    leeway=self._leeway_s,
                    options={"require": ["exp"]},
                )
        except jwt.ExpiredSignatureError:
            raise AuthError(401, "invalid authorization token: token is expired") from None
        except jwt.ImmatureSignatureError:
            raise AuthError(401, "invalid authorization token: token is not valid yet") from None
        except jwt.InvalidSignatureError:
            raise AuthError(
                401,
                "invalid authorization token: signature is invalid "
                "(was it signed with this server's API secret?)",
            ) from None
        except jwt.MissingRequiredClaimError:
            raise AuthError(401, "invalid authorization token: token has no expiry") from None
        except jwt.PyJWTError:
            raise AuthError(401, "invalid authorization token: malformed") from None
        return dict(claims)


def grants_from_claims(claims: Mapping[str, Any]) -> Grants:
    video = claims.get("video") or {}
    if not isinstance(video, dict):
        raise AuthError(401, "invalid authorization token: video grant is not an object")
    kind_name = str(claims.get("kind") or "").lower()
    attributes = claims.get("attributes") or {}
    sources = tuple(
        _SOURCES[s.lower()]
        for s in video.get("canPublishSources") or ()
        if isinstance(s, str) and s.lower() in _SOURCES
    )
    return Grants(
        identity=str(claims.get("sub") or ""),
        name=str(claims.get("name") or ""),
        metadata=str(claims.get("metadata") or ""),
        attributes={str(k): str(v) for k, v in attributes.items()}
        if isinstance(attributes, dict)
        else {},
        kind=_KINDS.get(kind_name, models.ParticipantInfo.STANDARD),
        room=str(video.get("room") or ""),
        room_join=bool(video.get("roomJoin")),
        room_create=bool(video.get("roomCreate")),
        room_list=bool(video.get("roomList")),
        room_admin=bool(video.get("roomAdmin")),
        can_publish=_bool_default_true(video, "canPublish"),
        can_subscribe=_bool_default_true(video, "canSubscribe"),
        can_publish_data=_bool_default_true(video, "canPublishData"),
        can_publish_sources=sources,
        can_update_own_metadata=bool(video.get("canUpdateOwnMetadata")),
        hidden=bool(video.get("hidden")),
        recorder=bool(video.get("recorder")),
        agent=bool(video.get("agent")),
    )


def join_room_name(grants: Grants, requested_room: str | None) -> str:
    """The room a join may enter, or an :class:`AuthError` saying why it may not."""
    if not grants.room_join:
        raise AuthError(401, "permissions denied: the token has no roomJoin grant")
    if not grants.identity:
        raise AuthError(400, "participant identity cannot be empty: set the token's identity")
    if grants.room and requested_room and requested_room != grants.room:
        raise AuthError(
            401,
            f"permissions denied: the token grants room {grants.room!r}, "
            f"not the requested room {requested_room!r}",
        )
    room = grants.room or requested_room or ""
    if not room:
        raise AuthError(400, "no room name: the token's roomJoin grant names no room")
    return room


def bearer_token(authorization: str | None, query_token: str | None) -> str:
    """The token of a request: ``Authorization: Bearer <token>`` or ``?access_token=``."""
    if authorization:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthError(401, "invalid authorization header: must be 'Bearer <token>'")
        return token.strip()
    if query_token:
        return query_token
    raise AuthError(401, "no access token: send it as 'Authorization: Bearer <token>'")


def _bool_default_true(grant: Mapping[str, Any], key: str) -> bool:
    value = grant.get(key)
    return True if value is None else bool(value)
