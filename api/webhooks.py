"""Outbound webhooks: signing, the SSRF guard and the delivery loop.

The outbox is in PostgreSQL (:mod:`store.webhooks`); every API process runs one
:class:`WebhookDispatcher` (started by ``api.__main__`` beside the sweeper). A loop claims due
deliveries (``FOR UPDATE SKIP LOCKED``, so replicas take different rows), POSTs them
concurrently, and records each attempt. A 2xx is delivered; anything else (another status, a
redirect, a timeout, a refused address) is retried after ``base * 2^(n-1)`` seconds (capped at
``WEBHOOK_RETRY_MAX_SECONDS``, jittered to between half and all of it) until
``WEBHOOK_MAX_ATTEMPTS``, then FAILED. A loop stopped or killed mid-way leaves its claimed rows
due again once their lease (twice the attempt timeout) passes: nothing is lost; an event may
arrive more than once, always with the same ``Transcriber-Event-Id``.

Each request carries::

    Content-Type: application/json
    Transcriber-Event-Id: evt_...          (the idempotency key: the same on every retry)
    Transcriber-Event-Type: session.ended
    Transcriber-Delivery-Attempt: 1
    Transcriber-Signature: t=1765119600,v1=<hex>[,v1=<hex>]

``v1`` is ``HMAC-SHA256(secret, f"{t}.{body}")`` in hex, ``t`` the Unix time of this attempt.
During a secret rotation's grace period a second ``v1`` is signed with the previous secret. A
receiver (see :func:`verify_signature`, and api/README.md) recomputes the HMAC over the raw body
with its secret, compares in constant time against any ``v1``, and refuses a ``t`` more than a
few minutes from its clock (a replayed request), then dedupes on the event id.

SSRF: endpoint URLs are http or https, without credentials; the connection goes only to
addresses that are global unicast. Loopback and private addresses are allowed by
``WEBHOOK_ALLOW_PRIVATE_ADDRESSES`` (off by default; the tests turn it on for their local
receiver); link-local (cloud metadata), multicast, reserved and unspecified ones never. Host
names are checked after resolution, by the connector's resolver, so a name that resolves to a
refused address is refused at connection time (no rebinding window). Redirects are not followed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import ipaddress
import logging
import random
import socket
import time
from collections.abc import Iterable
from datetime import timedelta
from typing import Final
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from api.metrics import ApiMetrics
from api.settings import ApiSettings
from core.errors import StorageError
from store.enums import DeliveryStatus
from store.records import ClaimedDelivery
from store.stores import Store

logger = logging.getLogger("api.webhooks")

SIGNATURE_HEADER: Final = "Transcriber-Signature"
EVENT_ID_HEADER: Final = "Transcriber-Event-Id"
EVENT_TYPE_HEADER: Final = "Transcriber-Event-Type"
ATTEMPT_HEADER: Final = "Transcriber-Delivery-Attempt"
USER_AGENT: Final = "livekit-transcriber-webhooks/1"
# a receiver should refuse signatures older (or newer) than this
DEFAULT_TOLERANCE_S: Final = 300


class UnsafeAddress(OSError):
    """The endpoint's address is not one deliveries may go to (SSRF guard)."""


def sign(body: bytes, secrets: Iterable[str], timestamp: int) -> str:
    """The ``Transcriber-Signature`` header: ``t=<timestamp>`` and one ``v1=`` per secret."""
    signed = str(timestamp).encode() + b"." + body
    parts = [f"t={timestamp}"]
    parts += [
        "v1=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest() for secret in secrets
    ]
    return ",".join(parts)


def verify_signature(
    body: bytes,
    header: str,
    secret: str,
    *,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> bool:
    """What a receiver does (a reference for host apps): True when one ``v1`` of ``header`` is
    the HMAC of ``t.body`` with ``secret`` and ``t`` is within ``tolerance_s`` of ``now``."""
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isdigit():
            timestamp = int(value)
        elif key == "v1":
            candidates.append(value)
    if timestamp is None or not candidates:
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance_s:
        return False
    expected = sign(body, [secret], timestamp).split(",v1=", 1)[1]
    return any(hmac.compare_digest(expected, c) for c in candidates)


def address_allowed(address: str, *, allow_private: bool) -> bool:
    """Whether deliveries may connect to ``address`` (an IP literal)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_link_local or ip.is_multicast or ip.is_unspecified:
        return False
    if ip.is_loopback or ip.is_private:  # (::1 is also "reserved")
        return allow_private
    return ip.is_global and not ip.is_reserved


def check_url(url: str, *, allow_private: bool) -> str | None:
    """Why ``url`` cannot be an endpoint, or None: http/https, a host, no credentials, and an
    IP-literal host must be an allowed address (host names are checked when connecting)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "not a valid URL"
    if parts.scheme not in ("http", "https"):
        return "only http and https URLs are allowed"
    if not parts.hostname:
        return "the URL has no host"
    if parts.username is not None or parts.password is not None:
        return "credentials in the URL are not allowed"
    if port == 0:
        return "port 0 is not allowed"
    host = parts.hostname
    if _is_ip(host) and not address_allowed(host, allow_private=allow_private):
        return "this address is not allowed (private, loopback, link-local or reserved)"
    if (host == "localhost" or host.endswith(".localhost")) and not allow_private:
        return "this address is not allowed (private, loopback, link-local or reserved)"
    return None


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True


class GuardedResolver(AbstractResolver):
    """Resolves like aiohttp's default resolver, then refuses the host if any of its addresses
    is not allowed (so a name cannot smuggle a request to an internal address)."""

    def __init__(self, *, allow_private: bool) -> None:
        self._inner = DefaultResolver()
        self._allow_private = allow_private

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        if not all(address_allowed(r["host"], allow_private=self._allow_private) for r in results):
            raise UnsafeAddress("the endpoint's host resolves to an address that is not allowed")
        return results

    async def close(self) -> None:
        await self._inner.close()


def backoff(attempt: int, settings: ApiSettings, rng: random.Random) -> timedelta:
    """The wait after failed attempt ``attempt`` (1-based): exponential, capped, jittered."""
    full = min(
        settings.webhook_retry_max_seconds,
        settings.webhook_retry_base_seconds * 2 ** min(attempt - 1, 62),
    )
    return timedelta(seconds=full / 2 + rng.uniform(0, full / 2))


# metric label of each outcome of record_attempt (None: the claim was superseded meanwhile)
_RESULTS: Final[dict[DeliveryStatus | None, str]] = {
    DeliveryStatus.DELIVERED: "delivered",
    DeliveryStatus.PENDING: "retry",
    DeliveryStatus.FAILED: "failed",
    None: "superseded",
}


class WebhookDispatcher:
    """One delivery loop: ``async with WebhookDispatcher(...) as d: await d.run()``."""

    def __init__(
        self,
        store: Store,
        settings: ApiSettings,
        metrics: ApiMetrics,
        *,
        rng: random.Random | None = None,
    ) -> None:
        self._store = store
        self._settings = settings
        self._metrics = metrics
        self._rng = rng or random.Random()
        self._http: aiohttp.ClientSession | None = None
        self._lease = timedelta(seconds=settings.webhook_timeout_seconds * 2)

    async def __aenter__(self) -> WebhookDispatcher:
        connector = aiohttp.TCPConnector(
            resolver=GuardedResolver(allow_private=self._settings.webhook_allow_private_addresses),
            limit=self._settings.webhook_batch_size,
        )
        self._http = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=self._settings.webhook_timeout_seconds),
            headers={"User-Agent": USER_AGENT},
            trust_env=False,  # no HTTP(S)_PROXY: the guard checks the real destination
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def run(self) -> None:
        """Deliver forever (until cancelled); a failing database only delays deliveries."""
        while True:
            sent = 0
            try:
                sent = await self.deliver_due()
                self._metrics.webhook_pending.set(await self._store.webhooks.count_pending())
            except StorageError as exc:
                logger.warning("webhook delivery pass failed", extra={"error": type(exc).__name__})
            if sent < self._settings.webhook_batch_size:
                await asyncio.sleep(self._settings.webhook_poll_interval_seconds)

    async def deliver_due(self) -> int:
        """Claim one batch of due deliveries and attempt them concurrently; how many."""
        claimed = await self._store.webhooks.claim_due(
            limit=self._settings.webhook_batch_size, lease=self._lease
        )
        if claimed:
            async with asyncio.TaskGroup() as tg:
                for delivery in claimed:
                    tg.create_task(self._attempt(delivery), name=f"webhook:{delivery.id}")
        return len(claimed)

    async def _attempt(self, delivery: ClaimedDelivery) -> None:
        code, latency_ms, error = await self._post(delivery)
        delivered = code is not None and 200 <= code < 300
        if code is not None and not delivered:
            error = f"HTTP {code}"
        last = delivery.attempt >= self._settings.webhook_max_attempts
        retry_in = (
            None if delivered or last else backoff(delivery.attempt, self._settings, self._rng)
        )
        try:
            outcome = await self._store.webhooks.record_attempt(
                delivery,
                status_code=code,
                latency_ms=latency_ms,
                error=error,
                delivered=delivered,
                retry_in=retry_in,
            )
        except StorageError:
            # the claim's lease runs out and the delivery is attempted again: at-least-once
            logger.warning("webhook attempt not recorded", extra={"delivery_id": delivery.id})
            return
        result = _RESULTS[outcome]
        self._metrics.webhook_deliveries.labels(result).inc()
        self._metrics.webhook_latency.observe(latency_ms / 1000)
        logger.info(
            "webhook attempt",
            extra={
                "delivery_id": delivery.id,
                "event_type": delivery.event_type,
                "attempt": delivery.attempt,
                "status_code": code,
                "result": result,
                "latency_ms": latency_ms,
            },
        )

    async def _post(self, delivery: ClaimedDelivery) -> tuple[int | None, int, str | None]:
        """One HTTP attempt: (status code or None, latency in ms, error or None)."""
        assert self._http is not None, "use the dispatcher in async with"
        body = delivery.body.encode("utf-8")
        headers = {
            "Content-Type": "application/json",
            EVENT_ID_HEADER: delivery.event_id,
            EVENT_TYPE_HEADER: delivery.event_type,
            ATTEMPT_HEADER: str(delivery.attempt),
            SIGNATURE_HEADER: sign(body, delivery.secrets, int(time.time())),
        }
        allow_private = self._settings.webhook_allow_private_addresses
        started = time.perf_counter()
        code: int | None = None
        error: str | None = None
        try:
            reason = check_url(delivery.url, allow_private=allow_private)
            if reason is not None:
                raise UnsafeAddress(reason)
            async with self._http.post(
                delivery.url, data=body, headers=headers, allow_redirects=False
            ) as response:
                code = response.status
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    await response.content.read(4096)  # a bounded read lets the connection pool
        except UnsafeAddress as exc:
            error = f"refused: {exc}"
        except TimeoutError:
            error = "timeout"
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, UnsafeAddress):
                error = f"refused: {exc.os_error}"
            else:
                error = f"connection failed: {type(exc.os_error).__name__}"
        except (aiohttp.ClientError, OSError) as exc:
            # the class, not the message: messages may repeat the URL (and a token in it)
            error = f"request failed: {type(exc).__name__}"
        return code, round((time.perf_counter() - started) * 1000), error
