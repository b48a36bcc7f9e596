"""Token buckets of api.ratelimit with an injected clock (no sleeping)."""

from __future__ import annotations

import pytest

from api.errors import RateLimited
from api.ratelimit import RateLimiter, RateLimits


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_burst_then_refill_at_the_rate() -> None:
    clock = Clock()
    limiter = RateLimiter(per_minute=6, burst=3, clock=clock)  # a token every 10 s
    assert [limiter.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("a") == pytest.approx(10.0)
    clock.now += 4
    assert limiter.take("a") == pytest.approx(6.0)  # refused requests take nothing
    clock.now += 6
    assert limiter.take("a") == 0.0
    assert limiter.take("a") > 0
    clock.now += 3600  # refills up to the burst, not beyond
    assert [limiter.take("a") for _ in range(4)][:3] == [0.0, 0.0, 0.0]
    assert limiter.take("a") > 0


def test_callers_have_their_own_buckets_and_memory_is_bounded() -> None:
    clock = Clock()
    limiter = RateLimiter(per_minute=1, burst=1, max_keys=100, clock=clock)
    assert limiter.take("a") == 0.0 and limiter.take("a") > 0
    assert limiter.take("b") == 0.0
    for n in range(1000):
        limiter.take(f"caller-{n}")
    assert len(limiter) == 100  # the least recently seen are forgotten


def test_rate_limits_raise_429_with_retry_after_and_skip_kinds_switched_off() -> None:
    clock = Clock()
    limits = RateLimits({"export": RateLimiter(per_minute=2, burst=1, clock=clock)})
    limits.check("export", "a")
    with pytest.raises(RateLimited) as caught:
        limits.check("export", "a")
    assert caught.value.status == 429 and caught.value.code == "rate_limited"
    assert caught.value.retry_after_s == 30
    for _ in range(100):
        limits.check("search", "a")  # no limiter: unlimited


def test_bad_limits_are_refused() -> None:
    with pytest.raises(ValueError):
        RateLimiter(per_minute=0, burst=1)
    with pytest.raises(ValueError):
        RateLimiter(per_minute=1, burst=0)
