"""Outbound webhook signing, the SSRF guard and back-off (pure functions; the delivery loop
itself is tested on real Postgres with a real receiver in tests/integration/api)."""

from __future__ import annotations

import hashlib
import hmac
import random
import re
from pathlib import Path
from typing import Any

import pytest

from api.settings import ApiSettings
from api.webhooks import (
    GuardedResolver,
    UnsafeAddress,
    address_allowed,
    backoff,
    check_url,
    sign,
    verify_signature,
)

README = Path(__file__).resolve().parents[3] / "api" / "README.md"


def test_the_signature_is_the_hmac_of_timestamp_dot_body() -> None:
    body = b'{"id":"evt_1"}'
    header = sign(body, ["s1", "s0"], 1_765_000_000)
    expected = [
        hmac.new(s, b"1765000000." + body, hashlib.sha256).hexdigest() for s in (b"s1", b"s0")
    ]
    assert header == f"t=1765000000,v1={expected[0]},v1={expected[1]}"
    assert verify_signature(body, header, "s0", now=1_765_000_100)
    assert not verify_signature(body, header, "s0", now=1_765_000_301)  # a replay
    assert not verify_signature(body, header, "s2", now=1_765_000_000)
    assert not verify_signature(body, "v1=" + expected[0], "s1", now=1_765_000_000)


def test_the_readme_receiver_snippet_verifies_a_real_signature() -> None:
    (snippet,) = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    scope: dict[str, Any] = {}
    exec(snippet, scope)  # the documented receiver code, as a host app would paste it
    body = b'{"type":"session.ended"}'
    import time

    header = sign(body, ["new", "old"], int(time.time()))
    assert scope["verify"](body, header, "old") and scope["verify"](body, header, "new")
    assert not scope["verify"](body, header, "other")
    stale = sign(body, ["new"], int(time.time()) - 600)
    assert not scope["verify"](body, stale, "new")


@pytest.mark.parametrize(
    ("address", "private_ok", "allowed"),
    [
        ("93.184.216.34", False, True),
        ("2606:4700::1111", False, True),
        ("127.0.0.1", False, False),
        ("127.0.0.1", True, True),
        ("::1", True, True),
        ("10.1.2.3", False, False),
        ("192.168.0.1", True, True),
        ("fd00::1", False, False),
        ("169.254.169.254", True, False),  # cloud metadata: never
        ("fe80::1", True, False),
        ("0.0.0.0", True, False),
        ("224.0.0.1", True, False),
        ("::ffff:127.0.0.1", False, False),  # IPv4-mapped loopback
        ("::ffff:169.254.169.254", True, False),
        ("not-an-ip", True, False),
    ],
)
def test_address_policy(address: str, private_ok: bool, allowed: bool) -> None:
    assert address_allowed(address, allow_private=private_ok) is allowed


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://hooks.example.com/x?y=1", True),
        ("http://hooks.example.com:8443/x", True),
        ("ftp://hooks.example.com/", False),
        ("javascript:alert(1)", False),
        ("https:///nohost", False),
        ("https://a:b@hooks.example.com/", False),
        ("http://127.0.0.1/", False),
        ("http://LOCALHOST/", False),
        ("http://[::1]:80/", False),
        ("http://hooks.example.com:99999/", False),
    ],
)
def test_url_policy(url: str, ok: bool) -> None:
    assert (check_url(url, allow_private=False) is None) is ok


async def test_the_resolver_refuses_names_of_loopback_addresses() -> None:
    resolver = GuardedResolver(allow_private=False)
    try:
        with pytest.raises(UnsafeAddress):
            await resolver.resolve("localhost", 80)
    finally:
        await resolver.close()
    allowing = GuardedResolver(allow_private=True)
    try:
        assert await allowing.resolve("localhost", 80)
    finally:
        await allowing.close()


def test_backoff_doubles_with_jitter_up_to_the_cap() -> None:
    settings = ApiSettings(webhook_retry_base_seconds=10, webhook_retry_max_seconds=100)
    rng = random.Random(7)
    for attempt, full in [(1, 10), (2, 20), (3, 40), (4, 80), (5, 100), (40, 100), (500, 100)]:
        waits = [backoff(attempt, settings, rng).total_seconds() for _ in range(50)]
        assert all(full / 2 <= w <= full for w in waits)
        assert len(set(waits)) > 1  # jittered: retries of many deliveries spread out
