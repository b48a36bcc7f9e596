"""Per-caller rate limits: token buckets in process, one set per kind of costly request.

A kind (``"search"``, ``"export"``) has a :class:`RateLimiter`: each caller gets a bucket of
``burst`` tokens refilled at ``per_minute / 60`` tokens a second; a request takes one token, and
without one it is refused ``429 rate_limited`` with ``Retry-After`` (seconds until a token).
The caller is the authenticated principal: a user JWT's space and user, or the admin key with
the space and user it acts for; requests without credentials are keyed by peer address.

Buckets live in this process (several API processes each allow the rate) and at most
``max_keys`` callers are remembered: past that, the least recently seen caller is forgotten,
which at worst gives it a fresh bucket. Use in a handler::

    @rate_limited("export")            # the whole handler
    async def handler(request): ...

    enforce(request, "search")         # or only on the costly branch

Limits of 0 requests a minute switch a kind off (:class:`RateLimits` holds no limiter for it).
"""

from __future__ import annotations

import functools
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from aiohttp import web

from api.context import context, principal
from api.errors import RateLimited, Unauthorized

__all__ = ["RateLimiter", "RateLimits", "caller_key", "enforce", "rate_limited"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated_s: float


class RateLimiter:
    """Token buckets keyed by caller (see the module docstring)."""

    def __init__(
        self,
        per_minute: float,
        burst: int,
        *,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if per_minute <= 0 or burst < 1 or max_keys < 1:
            raise ValueError("a rate limiter needs per_minute > 0, burst >= 1, max_keys >= 1")
        self.rate_per_s = per_minute / 60.0
        self.burst = burst
        self._max_keys = max_keys
        self._clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def take(self, key: str) -> float:
        """Take a token of ``key``'s bucket: 0.0 when there was one, else the seconds until
        there will be (nothing is taken then)."""
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(float(self.burst), now)
            while len(self._buckets) > self._max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            elapsed = max(now - bucket.updated_s, 0.0)
            bucket.tokens = min(float(self.burst), bucket.tokens + elapsed * self.rate_per_s)
            bucket.updated_s = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.rate_per_s

    def __len__(self) -> int:
        return len(self._buckets)


class RateLimits:
    """The limiters of one app by kind; a kind without a limiter is unlimited."""

    def __init__(self, limiters: Mapping[str, RateLimiter]) -> None:
        self._limiters = dict(limiters)

    def check(self, kind: str, key: str) -> None:
        """Take a token of ``key`` for ``kind``; :class:`RateLimited` (429) without one."""
        limiter = self._limiters.get(kind)
        if limiter is None:
            return
        wait_s = limiter.take(key)
        if wait_s > 0:
            raise RateLimited(
                f"too many {kind} requests; retry later",
                retry_after_s=max(math.ceil(wait_s), 1),
            )


def caller_key(request: web.Request) -> str:
    """Who the request counts against: the principal, or the peer address without one."""
    try:
        who = principal(request)
    except Unauthorized:
        return f"peer:{request.remote or '-'}"
    kind = "service" if who.is_service else "user"
    return f"{kind}:{who.space_id or '-'}:{who.user_id or '-'}"


def enforce(request: web.Request, kind: str) -> None:
    """Count ``request`` against its caller's ``kind`` limit (429 when it is exhausted)."""
    context(request).rate_limits.check(kind, caller_key(request))


def rate_limited(kind: str) -> Callable[[Handler], Handler]:
    """Decorate a handler so every request to it counts against the caller's ``kind`` limit
    (after authentication: a request without valid credentials is a 401, never a 429)."""

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def limited(request: web.Request) -> web.StreamResponse:
            principal(request)
            enforce(request, kind)
            return await handler(request)

        return limited

    return decorate
