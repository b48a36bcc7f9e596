"""Secrets anyone could guess, and the development mode that tolerates them.

Every process that takes a secret (the API, the bot, the dev server) refuses to start when one
is shorter than :data:`MIN_SECRET_BYTES` or a well-known value: LiveKit's development pair
``devkey``/``secret``, ``changeme`` and the like, or a placeholder such as the ``CHANGE-ME-...``
values ``deploy/.env.example`` ships. Anyone who knows such a secret can sign webhooks, user
tokens or join tokens.

``TRANSCRIBER_DEV_MODE=1`` (:data:`DEV_MODE_VAR`) tolerates them: ``make demo``, the tests and
the benchmarks run with it. A process in development mode says so in its log at start.

Problems name the setting, never its value.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import Final

__all__ = [
    "DEV_MODE_VAR",
    "MIN_SECRET_BYTES",
    "bearer_matches",
    "dev_mode",
    "secret_problem",
    "secret_problems",
]

DEV_MODE_VAR: Final = "TRANSCRIBER_DEV_MODE"
# 32 bytes: what `openssl rand -hex 16` gives at the least; HS256 keys shorter than the hash are
# weaker than the signature (RFC 7518 3.2)
MIN_SECRET_BYTES: Final = 32

# well-known values (compared case-insensitively): LiveKit's `--dev` pair, common defaults
_KNOWN: Final = frozenset(
    {
        "devkey",
        "secret",
        "devsecret",
        "apikey",
        "apisecret",
        "api_secret",
        "changeme",
        "change-me",
        "change_me",
        "password",
        "admin",
        "test",
        "default",
    }
)
# placeholders that example files ship (deploy/.env.example: CHANGE-ME-livekit-secret-0123...)
_PLACEHOLDER_MARKERS: Final = ("changeme", "change-me", "change_me", "replace-me", "replaceme")
# a secret made of a handful of distinct characters ("aaaa...", "0101...") is not random
_MIN_DISTINCT_CHARS: Final = 8

_TRUE: Final = frozenset({"1", "true", "yes", "on"})


def dev_mode(environ: Mapping[str, str]) -> bool:
    """Whether ``TRANSCRIBER_DEV_MODE`` is on (1/true/yes/on)."""
    return environ.get(DEV_MODE_VAR, "").strip().lower() in _TRUE


def secret_problem(value: str) -> str | None:
    """Why ``value`` is not a usable secret, or None when it is."""
    lowered = value.strip().lower()
    if lowered in _KNOWN:
        return "is a well-known default"
    if any(marker in lowered for marker in _PLACEHOLDER_MARKERS):
        return "is an example placeholder"
    if len(value.encode("utf-8", "surrogateescape")) < MIN_SECRET_BYTES:
        return f"is shorter than {MIN_SECRET_BYTES} bytes"
    if len(set(value)) < _MIN_DISTINCT_CHARS:
        return "is not random"
    return None


def secret_problems(secrets: Mapping[str, str | None], *, dev_mode: bool) -> list[str]:
    """One line per unusable secret (``NAME is ...``); unset ones (None) are not checked here,
    and development mode accepts everything."""
    if dev_mode:
        return []
    problems = []
    for name, value in secrets.items():
        if value is None:
            continue
        reason = secret_problem(value)
        if reason is not None:
            problems.append(
                f"{name} {reason}: use 32+ random bytes (openssl rand -hex 32), "
                f"or set {DEV_MODE_VAR}=1 for local development"
            )
    return problems


def bearer_matches(authorization: str | None, token: str) -> bool:
    """Whether an ``Authorization`` header is ``Bearer <token>`` (compared in constant time)."""
    scheme, _, value = (authorization or "").partition(" ")
    if scheme.lower() != "bearer":
        return False
    given = value.strip().encode("utf-8", "surrogateescape")
    return hmac.compare_digest(given, token.encode("utf-8", "surrogateescape"))
