"""Outbound webhooks on real PostgreSQL with a real HTTP receiver on 127.0.0.1: endpoints per
space, signatures, retries, restarts of the delivery loop, secret rotation, and the code paths
that emit each event type."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.context import CONTEXT
from api.schemas import SessionEndedEvent, TranscriptReadyEvent, UsageUpdatedEvent
from api.sweeper import sweep_once
from api.webhooks import WebhookDispatcher, verify_signature
from store.enums import DeliveryStatus, SessionStatus
from store.records import SessionRecord
from store.stores import Store
from tests.integration.api.conftest import Client, MakeClient, api_settings
from tests.integration.api.support import admin, error_of, seed_usage, user, webhook

E = "/api/webhooks/endpoints"
# what the tests' app and loops run with: the receiver is on loopback; retries come fast
FAST: dict[str, Any] = {
    "webhook_allow_private_addresses": True,
    "webhook_retry_base_seconds": 0.01,
    "webhook_retry_max_seconds": 0.05,
    "webhook_timeout_seconds": 2.0,
    "webhook_poll_interval_seconds": 0.02,
}


@dataclass
class Received:
    event_id: str
    event_type: str
    attempt: int
    signature: str
    body: bytes
    status: int

    @property
    def event(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed


@dataclass
class Receiver:
    """A host app's endpoint: records every request; ``plan`` gives the statuses to answer per
    event id in turn (then 200); ``hang_first`` holds the first request open forever."""

    url: str = ""
    requests: list[Received] = field(default_factory=list)
    plan: list[int] = field(default_factory=list)
    hang_first: bool = False
    _answered: dict[str, int] = field(default_factory=dict)
    first_seen: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        event_id = request.headers["Transcriber-Event-Id"]
        if self.hang_first and not self.first_seen.is_set():
            self.first_seen.set()
            await asyncio.sleep(3600)
        self.first_seen.set()
        n = self._answered.get(event_id, 0)
        self._answered[event_id] = n + 1
        status = self.plan[n] if n < len(self.plan) else 200
        self.requests.append(
            Received(
                event_id=event_id,
                event_type=request.headers["Transcriber-Event-Type"],
                attempt=int(request.headers["Transcriber-Delivery-Attempt"]),
                signature=request.headers["Transcriber-Signature"],
                body=body,
                status=status,
            )
        )
        return web.Response(status=status, text="ok")

    def delivered(self, event_type: str | None = None) -> list[Received]:
        return [
            r
            for r in self.requests
            if 200 <= r.status < 300 and (event_type is None or r.event_type == event_type)
        ]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    found = Receiver()
    app = web.Application()
    app.router.add_post("/hook", found.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    found.url = f"http://127.0.0.1:{port}/hook"
    try:
        yield found
    finally:
        await runner.cleanup()


@pytest.fixture
async def fast_client(make_client: MakeClient) -> Client:
    return await make_client(**FAST)


Loops = Callable[..., Awaitable[WebhookDispatcher]]


@pytest.fixture
async def loops(
    sessionmaker: async_sessionmaker[AsyncSession], fast_client: Client
) -> AsyncIterator[Loops]:
    """Delivery loops as the API process runs them, on the fast client's metrics."""
    async with AsyncExitStack() as stack:

        async def make(**overrides: Any) -> WebhookDispatcher:
            settings = api_settings(**{**FAST, **overrides})
            metrics = fast_client.server.app[CONTEXT].metrics
            return await stack.enter_async_context(
                WebhookDispatcher(Store(sessionmaker), settings, metrics)
            )

        yield make


async def deliver_until(
    dispatcher: WebhookDispatcher, done: Callable[[], bool], *, seconds: float = 30
) -> None:
    """Run delivery passes until ``done()`` (a hang fails the test instead of waiting forever)."""
    deadline = time.monotonic() + seconds
    while not done():
        assert time.monotonic() < deadline, "the deliveries did not arrive"
        if await dispatcher.deliver_due() == 0:
            await asyncio.sleep(0.02)


async def register(
    client: Client, url: str, space: str = "space-a", **fields: Any
) -> dict[str, Any]:
    response = await client.post(E, json={"url": url, **fields}, headers=admin(space))
    assert response.status == 201, await response.text()
    body: dict[str, Any] = await response.json()
    return body


async def new_session(repo: Store, space: str = "space-a") -> SessionRecord:
    return await repo.sessions.create_session(space_id=space, created_by="alice")


async def end_by_api(client: Client, session: SessionRecord) -> None:
    response = await client.post(f"/api/sessions/{session.slug}/end", headers=user("alice"))
    assert response.status == 200


def hmac_hex(secret: str, timestamp: str, body: bytes) -> str:
    return hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def parse_signature(header: str) -> tuple[str, list[str]]:
    parts = [p.split("=", 1) for p in header.split(",")]
    (t,) = [v for k, v in parts if k == "t"]
    return t, [v for k, v in parts if k == "v1"]


# -- signatures ----------------------------------------------------------------------------------


async def test_events_are_signed_with_the_endpoint_secret(
    fast_client: Client, repo: Store, receiver: Receiver, loops: Loops
) -> None:
    endpoint = await register(fast_client, receiver.url, event_types=["session.ended"])
    secret = endpoint["secret"]
    session = await new_session(repo)
    await end_by_api(fast_client, session)
    await deliver_until(await loops(), lambda: bool(receiver.delivered()))

    (got,) = receiver.requests
    t, v1 = parse_signature(got.signature)
    assert v1 == [hmac_hex(secret, t, got.body)]
    assert abs(int(t) - time.time()) < 600
    event = got.event
    assert (event["id"], event["type"], event["space_id"]) == (
        got.event_id,
        "session.ended",
        "space-a",
    )
    assert event["data"]["session"]["slug"] == session.slug
    assert event["data"]["reason"] == "ended_by_api"
    # the reference receiver check: the secret verifies, a replay 6 minutes later does not
    assert verify_signature(got.body, got.signature, secret)
    assert not verify_signature(got.body, got.signature, secret, now=int(t) + 360)
    assert not verify_signature(got.body, got.signature, "whsec_wrong")
    assert not verify_signature(got.body + b" ", got.signature, secret)


# -- retries -------------------------------------------------------------------------------------


async def test_failing_twice_then_succeeding_delivers_on_the_third_try_with_one_event_id(
    fast_client: Client, repo: Store, receiver: Receiver, loops: Loops
) -> None:
    endpoint = await register(fast_client, receiver.url, event_types=["session.ended"])
    receiver.plan = [500, 503]
    await end_by_api(fast_client, await new_session(repo))
    await deliver_until(await loops(), lambda: bool(receiver.delivered()))

    assert [(r.attempt, r.status) for r in receiver.requests] == [(1, 500), (2, 503), (3, 200)]
    assert len({r.event_id for r in receiver.requests}) == 1
    assert len({r.body for r in receiver.requests}) == 1

    response = await fast_client.get(f"{E}/{endpoint['id']}/deliveries", headers=admin("space-a"))
    assert response.status == 200
    (delivery,) = (await response.json())["items"]
    assert delivery["event_id"] == receiver.requests[0].event_id
    assert (delivery["status"], delivery["attempts"], delivery["last_status_code"]) == (
        "DELIVERED",
        3,
        200,
    )
    log = delivery["attempt_log"]
    assert [(a["attempt"], a["status_code"]) for a in log] == [(1, 500), (2, 503), (3, 200)]
    assert [a["error"] for a in log] == ["HTTP 500", "HTTP 503", None]
    assert all(a["latency_ms"] >= 0 for a in log)

    metrics = await (await fast_client.get("/metrics")).text()
    assert 'transcriber_webhook_deliveries_total{result="retry"} 2.0' in metrics
    assert 'transcriber_webhook_deliveries_total{result="delivered"} 1.0' in metrics


async def test_after_max_attempts_the_delivery_is_failed(
    fast_client: Client, repo: Store, receiver: Receiver, loops: Loops
) -> None:
    endpoint = await register(fast_client, receiver.url, event_types=["session.ended"])
    receiver.plan = [500] * 10
    await end_by_api(fast_client, await new_session(repo))
    dispatcher = await loops(webhook_max_attempts=3)

    async def failed() -> bool:
        rows = await repo.webhooks.list_deliveries("space-a", endpoint["id"])
        return rows is not None and rows[0].status is DeliveryStatus.FAILED

    deadline = time.monotonic() + 30
    while not await failed():
        assert time.monotonic() < deadline
        await dispatcher.deliver_due()
        await asyncio.sleep(0.02)
    for _ in range(5):  # nothing more is attempted
        await dispatcher.deliver_due()
    assert [r.attempt for r in receiver.requests] == [1, 2, 3]
    metrics = await (await fast_client.get("/metrics")).text()
    assert 'transcriber_webhook_deliveries_total{result="failed"} 1.0' in metrics
    assert "transcriber_webhook_deliveries_pending" in metrics


async def test_unreachable_receiver_is_logged_and_retried(
    fast_client: Client, repo: Store, loops: Loops
) -> None:
    # a port nobody listens on: connection refused is an attempt with no status code
    endpoint = await register(fast_client, "http://127.0.0.1:9/hook")
    await end_by_api(fast_client, await new_session(repo))
    await (await loops()).deliver_due()
    rows = await repo.webhooks.list_deliveries("space-a", endpoint["id"])
    assert rows
    for row in rows:
        assert row.status is DeliveryStatus.PENDING
        (attempt,) = row.attempt_log
        assert attempt.status_code is None
        assert attempt.error is not None and attempt.error.startswith("connection failed")


# -- restarts ------------------------------------------------------------------------------------


async def test_a_loop_stopped_mid_delivery_loses_nothing(
    fast_client: Client, repo: Store, receiver: Receiver, loops: Loops
) -> None:
    endpoint = await register(fast_client, receiver.url)
    receiver.hang_first = True
    for _ in range(4):
        await end_by_api(fast_client, await new_session(repo))
    rows = await repo.webhooks.list_deliveries("space-a", endpoint["id"])
    assert rows is not None
    expected = {r.event_id for r in rows}
    assert len(expected) == 4 * 3  # session.ended, transcript.ready, usage.updated

    first = await loops(webhook_timeout_seconds=0.5, webhook_batch_size=3)
    task = asyncio.create_task(first.run(), name="first-loop")
    await asyncio.wait_for(receiver.first_seen.wait(), 30)
    task.cancel()  # a restart: the loop stops with a request in flight
    with pytest.raises(asyncio.CancelledError):
        await task

    second = await loops(webhook_timeout_seconds=0.5)
    await deliver_until(second, lambda: {r.event_id for r in receiver.delivered()} >= expected)

    rows = await repo.webhooks.list_deliveries("space-a", endpoint["id"])
    assert rows is not None and {r.status for r in rows} == {DeliveryStatus.DELIVERED}
    # at-least-once: every event arrived; a repeat carries the same id and body
    by_id: dict[str, set[bytes]] = {}
    for r in receiver.delivered():
        by_id.setdefault(r.event_id, set()).add(r.body)
    assert set(by_id) == expected and all(len(bodies) == 1 for bodies in by_id.values())


async def test_two_loops_share_the_work_without_double_claims(
    fast_client: Client, repo: Store, receiver: Receiver, loops: Loops
) -> None:
    await register(fast_client, receiver.url, event_types=["session.ended"])
    for _ in range(6):
        await end_by_api(fast_client, await new_session(repo))
    a, b = await loops(webhook_batch_size=2), await loops(webhook_batch_size=2)
    while await asyncio.gather(a.deliver_due(), b.deliver_due()) != [0, 0]:
        pass
    ids = [r.event_id for r in receiver.requests]
    assert len(ids) == 6 and len(set(ids)) == 6


# -- secret rotation -----------------------------------------------------------------------------


async def test_rotation_signs_with_both_secrets_during_the_grace_period(
    fast_client: Client, repo: Store, receiver: Receiver, loops: Loops
) -> None:
    endpoint = await register(fast_client, receiver.url, event_types=["session.ended"])
    old = endpoint["secret"]
    path = f"{E}/{endpoint['id']}/rotate-secret"
    response = await fast_client.post(path, headers=admin("space-a"))
    assert response.status == 200
    rotated = await response.json()
    new = rotated["secret"]
    assert new != old and rotated["previous_secret_expires_at"] is not None

    await end_by_api(fast_client, await new_session(repo))
    dispatcher = await loops()
    await deliver_until(dispatcher, lambda: len(receiver.delivered()) == 1)
    got = receiver.requests[-1]
    t, v1 = parse_signature(got.signature)
    assert v1 == [hmac_hex(new, t, got.body), hmac_hex(old, t, got.body)]
    assert verify_signature(got.body, got.signature, old)
    assert verify_signature(got.body, got.signature, new)

    # a rotation without grace: only the newest secret signs
    response = await fast_client.post(path, json={"grace_minutes": 0}, headers=admin("space-a"))
    newest = (await response.json())["secret"]
    await end_by_api(fast_client, await new_session(repo))
    await deliver_until(dispatcher, lambda: len(receiver.delivered()) == 2)
    got = receiver.requests[-1]
    t, v1 = parse_signature(got.signature)
    assert v1 == [hmac_hex(newest, t, got.body)]
    assert not verify_signature(got.body, got.signature, new)

    shown = await (await fast_client.get(f"{E}/{endpoint['id']}", headers=admin("space-a"))).json()
    assert "secret" not in shown


# -- endpoints and the space boundary ------------------------------------------------------------


async def test_endpoint_crud(fast_client: Client, receiver: Receiver) -> None:
    created = await register(fast_client, receiver.url, description="crm")
    assert created["secret"].startswith("whsec_") and created["event_types"] is None
    one = f"{E}/{created['id']}"
    h = admin("space-a")
    listed = await (await fast_client.get(E, headers=h)).json()
    assert [e["id"] for e in listed["items"]] == [created["id"]]
    assert "secret" not in listed["items"][0]

    response = await fast_client.patch(
        one, json={"enabled": False, "event_types": ["transcript.ready"]}, headers=h
    )
    assert response.status == 200
    patched = await response.json()
    assert (patched["enabled"], patched["event_types"], patched["description"]) == (
        False,
        ["transcript.ready"],
        "crm",
    )
    response = await fast_client.patch(one, json={"event_types": None}, headers=h)
    assert (await response.json())["event_types"] is None
    response = await fast_client.patch(one, json={"url": "gopher://x.example/"}, headers=h)
    assert await error_of(response) == (422, "validation_error")
    response = await fast_client.patch(one, json={"url": None}, headers=h)
    assert await error_of(response) == (422, "validation_error")

    assert (await fast_client.delete(one, headers=h)).status == 204
    assert (await fast_client.get(one, headers=h)).status == 404


async def test_another_space_gets_404_on_every_endpoint_route(
    fast_client: Client, receiver: Receiver
) -> None:
    endpoint = await register(fast_client, receiver.url)
    one = f"{E}/{endpoint['id']}"
    for other in (admin("space-b"), user("bob", space="space-b", role="admin")):
        assert (await fast_client.get(one, headers=other)).status == 404
        assert (await fast_client.patch(one, json={"enabled": False}, headers=other)).status == 404
        assert (await fast_client.post(f"{one}/rotate-secret", headers=other)).status == 404
        assert (await fast_client.get(f"{one}/deliveries", headers=other)).status == 404
        assert (await fast_client.delete(one, headers=other)).status == 404
        listed = await (await fast_client.get(E, headers=other)).json()
        assert listed["items"] == []
    # members may not manage endpoints; the admin key must name a space
    assert await error_of(await fast_client.get(E, headers=user("alice"))) == (403, "forbidden")
    status, _ = await error_of(await fast_client.get(E, headers=admin()))
    assert status == 400
    # still there for its own space
    assert (await fast_client.get(one, headers=admin("space-a"))).status == 200


async def test_events_of_a_space_go_only_to_its_endpoints(
    fast_client: Client, repo: Store, receiver: Receiver, loops: Loops
) -> None:
    await register(fast_client, receiver.url, space="space-b")
    await end_by_api(fast_client, await new_session(repo, "space-a"))
    assert await (await loops()).deliver_due() == 0
    assert receiver.requests == []


# -- SSRF ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/hook",
        "file:///etc/passwd",
        "http://user:pw@example.com/hook",
        "http://127.0.0.1:8080/hook",
        "http://localhost/hook",
        "http://10.0.0.5/hook",
        "http://[::1]/hook",
        "http://169.254.169.254/latest/meta-data",
    ],
)
async def test_unsafe_urls_are_refused(client: Client, url: str) -> None:
    response = await client.post(E, json={"url": url}, headers=admin("space-a"))
    assert await error_of(response) == (422, "validation_error")


async def test_link_local_is_refused_even_when_private_addresses_are_allowed(
    fast_client: Client,
) -> None:
    response = await fast_client.post(
        E, json={"url": "http://169.254.169.254/"}, headers=admin("space-a")
    )
    assert response.status == 422


async def test_a_loopback_endpoint_is_not_delivered_to_by_a_guarded_loop(
    fast_client: Client, repo: Store, receiver: Receiver, loops: Loops
) -> None:
    endpoint = await register(fast_client, receiver.url, event_types=["session.ended"])
    await end_by_api(fast_client, await new_session(repo))
    await (await loops(webhook_allow_private_addresses=False)).deliver_due()
    assert receiver.requests == []
    rows = await repo.webhooks.list_deliveries("space-a", endpoint["id"])
    assert rows is not None
    (attempt,) = rows[0].attempt_log
    assert attempt.error is not None and attempt.error.startswith("refused")


# -- which code path emits which event -----------------------------------------------------------


async def test_livekit_participant_joined_emits_session_live(
    fast_client: Client, repo: Store, receiver: Receiver, loops: Loops
) -> None:
    await register(fast_client, receiver.url, event_types=["session.live"])
    session = await new_session(repo)
    for identity in ("alice", "bob"):  # only the first join turns the session LIVE
        body, headers = webhook("participant_joined", session.slug, identity)
        assert (
            await fast_client.post("/webhooks/livekit", data=body, headers=headers)
        ).status == 200
    await deliver_until(await loops(), lambda: bool(receiver.delivered()))
    await (await loops()).deliver_due()
    (got,) = receiver.requests
    data = got.event["data"]["session"]
    assert (got.event_type, data["slug"], data["status"]) == ("session.live", session.slug, "LIVE")
    assert data["started_at"] is not None


async def test_participant_registration_emits_session_live(
    fast_client: Client, repo: Store, receiver: Receiver, loops: Loops
) -> None:
    await register(fast_client, receiver.url, event_types=["session.live"])
    session = await new_session(repo)
    response = await fast_client.post(
        f"/api/sessions/{session.slug}/participants/join", json={}, headers=user("alice")
    )
    assert response.status == 200
    await deliver_until(await loops(), lambda: bool(receiver.delivered()))
    assert receiver.requests[0].event["data"]["session"]["slug"] == session.slug


async def test_room_finished_emits_session_ended(
    fast_client: Client, repo: Store, receiver: Receiver, loops: Loops
) -> None:
    await register(fast_client, receiver.url, event_types=["session.ended"])
    session = await new_session(repo)
    body, headers = webhook("room_finished", session.slug)
    assert (await fast_client.post("/webhooks/livekit", data=body, headers=headers)).status == 200
    # LiveKit retrying the webhook does not end the session twice
    assert (await fast_client.post("/webhooks/livekit", data=body, headers=headers)).status == 200
    await deliver_until(await loops(), lambda: bool(receiver.delivered()))
    (got,) = receiver.requests
    assert got.event["data"]["reason"] == "room_finished"
    assert got.event["data"]["session"]["status"] == "ENDED"


async def test_the_inactivity_sweeper_emits_session_ended(
    fast_client: Client, repo: Store, receiver: Receiver, loops: Loops
) -> None:
    await register(fast_client, receiver.url, event_types=["session.ended"])
    session = await new_session(repo)
    await repo.sessions.participant_joined(session.id, "alice")
    later = (await repo.sessions.get_session(session.slug)).last_activity_at  # type: ignore[union-attr]
    await sweep_once(repo, api_settings(**FAST), now=later + timedelta(hours=2))
    await deliver_until(await loops(), lambda: bool(receiver.delivered()))
    (got,) = receiver.requests
    assert got.event["data"]["reason"] == "inactive"


async def test_without_a_bot_the_transcript_is_ready_when_the_session_ends(
    fast_client: Client, repo: Store, receiver: Receiver, loops: Loops
) -> None:
    await register(fast_client, receiver.url)
    session = await new_session(repo)
    await end_by_api(fast_client, session)
    await deliver_until(await loops(), lambda: len(receiver.delivered()) == 3)
    assert sorted(r.event_type for r in receiver.requests) == [
        "session.ended",
        "transcript.ready",
        "usage.updated",
    ]
    # the payloads are the documented ones
    models = {
        "session.ended": SessionEndedEvent,
        "transcript.ready": TranscriptReadyEvent,
        "usage.updated": UsageUpdatedEvent,
    }
    for got in receiver.requests:
        models[got.event_type].model_validate(got.event)
    (ready,) = receiver.delivered("transcript.ready")
    assert ready.event["data"]["complete"] is True
    assert ready.event["data"]["transcript_url"] == f"/api/sessions/{session.slug}/transcript"


async def test_transcript_ready_waits_for_the_bot_to_store_its_finals(
    fast_client: Client, repo: Store, receiver: Receiver, loops: Loops
) -> None:
    await register(fast_client, receiver.url)
    session = await new_session(repo)
    await repo.sessions.participant_joined(session.id, "alice", user_id="alice")
    await repo.jobs.request_transcription(session.id)
    lease = await repo.jobs.claim_job("worker-1")
    assert lease is not None and lease.session_id == session.id
    await seed_usage(repo, session, "alice", "61.5")

    await end_by_api(fast_client, session)  # the bot is still in the room, finals in its spool
    dispatcher = await loops()
    await deliver_until(dispatcher, lambda: bool(receiver.delivered("session.ended")))
    await dispatcher.deliver_due()
    assert {r.event_type for r in receiver.requests} == {"session.live", "session.ended"}

    # the bot left, its spool drained: it reports, and the transcript is announced
    assert await repo.jobs.finals_stored(lease)
    await deliver_until(dispatcher, lambda: bool(receiver.delivered("usage.updated")))
    (ready,) = receiver.delivered("transcript.ready")
    assert ready.event["data"]["complete"] is True
    (usage,) = receiver.delivered("usage.updated")
    (totals,) = usage.event["data"]["totals"]
    assert (totals["audio_seconds"], totals["billed_minutes"], totals["currency"]) == (
        "61.500",
        2,
        "USD",
    )
    # a second report (a retry) announces nothing again
    assert await repo.jobs.finals_stored(lease)
    assert await dispatcher.deliver_due() == 0


async def test_a_bot_that_left_before_the_session_ended_does_not_delay_the_transcript(
    fast_client: Client, repo: Store, receiver: Receiver, loops: Loops
) -> None:
    await register(fast_client, receiver.url, event_types=["transcript.ready"])
    session = await new_session(repo)
    await repo.jobs.request_transcription(session.id)
    lease = await repo.jobs.claim_job("worker-1")
    assert lease is not None
    await repo.jobs.finish_job(lease, reason="room_empty")
    assert await repo.jobs.finals_stored(lease)  # nothing announced: the session goes on
    assert await (await loops()).deliver_due() == 0
    await end_by_api(fast_client, session)
    await deliver_until(await loops(), lambda: bool(receiver.delivered()))


async def test_a_reclaimed_job_waits_for_the_new_worker(
    fast_client: Client, repo: Store, receiver: Receiver, loops: Loops
) -> None:
    await register(fast_client, receiver.url, event_types=["transcript.ready"])
    session = await new_session(repo)
    await repo.jobs.request_transcription(session.id)
    first = await repo.jobs.claim_job("worker-1")
    assert first is not None
    assert await repo.jobs.release_job(first)
    second = await repo.jobs.claim_job("worker-2")
    assert second is not None
    await end_by_api(fast_client, session)
    # the first worker's late report is not the last claim's: nothing yet
    assert not await repo.jobs.finals_stored(first)
    assert await (await loops()).deliver_due() == 0
    assert await repo.jobs.finals_stored(second)
    await deliver_until(await loops(), lambda: bool(receiver.delivered()))


async def test_a_dead_bot_gets_an_incomplete_transcript_ready_after_the_timeout(
    fast_client: Client, repo: Store, receiver: Receiver, loops: Loops
) -> None:
    await register(fast_client, receiver.url, event_types=["transcript.ready"])
    session = await new_session(repo)
    await repo.jobs.request_transcription(session.id)
    assert await repo.jobs.claim_job("worker-1") is not None
    await end_by_api(fast_client, session)  # the worker never reports
    ended = await repo.sessions.get_session(session.slug)
    assert ended is not None and ended.status is SessionStatus.ENDED and ended.ended_at
    settings = api_settings(**FAST)
    await sweep_once(repo, settings, now=ended.ended_at + timedelta(minutes=5))
    assert await (await loops()).deliver_due() == 0
    await sweep_once(repo, settings, now=ended.ended_at + timedelta(minutes=31))
    await deliver_until(await loops(), lambda: bool(receiver.delivered()))
    (ready,) = receiver.requests
    assert ready.event["data"]["complete"] is False


async def test_a_disabled_endpoint_gets_no_events(
    fast_client: Client, repo: Store, receiver: Receiver, loops: Loops
) -> None:
    await register(fast_client, receiver.url, enabled=False)
    await end_by_api(fast_client, await new_session(repo))
    assert await (await loops()).deliver_due() == 0


async def test_the_openapi_document_describes_the_routes_and_payloads(client: Client) -> None:
    document = await (await client.get("/api/openapi.json")).json()
    paths = document["paths"]
    assert set(paths[E]) == {"get", "post"}
    assert set(paths[E + "/{endpoint_id}"]) == {"get", "patch", "delete"}
    assert set(paths[E + "/{endpoint_id}/rotate-secret"]) == {"post"}
    assert set(paths[E + "/{endpoint_id}/deliveries"]) == {"get"}
    hooks = document["webhooks"]
    assert set(hooks) == {"session.live", "session.ended", "transcript.ready", "usage.updated"}
    schemas = document["components"]["schemas"]
    for name in hooks:
        ref = hooks[name]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        assert ref.rsplit("/", 1)[1] in schemas
        headers = {p["name"] for p in hooks[name]["post"]["parameters"]}
        assert {"Transcriber-Signature", "Transcriber-Event-Id"} <= headers


async def test_ending_and_the_bot_report_racing_announce_each_transcript_once(
    fast_client: Client, repo: Store, receiver: Receiver
) -> None:
    """The session's end and the bot's finals report racing (the job already STOPPED, so only
    the session's row orders them): each session's transcript.ready is written exactly once."""
    endpoint = await register(fast_client, receiver.url, event_types=["transcript.ready"])
    leases = []
    for _ in range(12):
        session = await new_session(repo)
        await repo.jobs.request_transcription(session.id)
        lease = await repo.jobs.claim_job("worker-1")
        assert lease is not None and lease.session_id == session.id
        # the bot left the emptied room (the job is STOPPED) and is storing its last finals
        assert await repo.jobs.finish_job(lease, reason="room_empty")
        leases.append(lease)
    await asyncio.gather(
        *(repo.sessions.end_session(lease.session_id) for lease in leases),
        *(repo.jobs.finals_stored(lease) for lease in leases),
    )
    rows = await repo.webhooks.list_deliveries("space-a", endpoint["id"])
    assert rows is not None
    slugs = sorted(json.loads(r.body)["data"]["session"]["slug"] for r in rows)
    expected = []
    for lease in leases:
        found = await repo.sessions.get_session_by_id(lease.session_id)
        assert found is not None
        expected.append(found.slug)
    assert slugs == sorted(expected)


async def test_the_running_loop_exports_the_pending_count(
    fast_client: Client, repo: Store, receiver: Receiver, loops: Loops
) -> None:
    await register(fast_client, receiver.url)
    receiver.plan = [500]  # every event needs a retry: pending for a while
    await end_by_api(fast_client, await new_session(repo))
    # the retry waits an hour: base and cap both (the cap alone would bring it back in 50 ms)
    hour = {"webhook_retry_base_seconds": 3600, "webhook_retry_max_seconds": 3600}
    loop = asyncio.create_task((await loops(**hour)).run())
    try:
        deadline = time.monotonic() + 30
        # the three events failed once and wait for their retry: still pending
        while (
            "transcriber_webhook_deliveries_pending 3.0"
            not in await (await fast_client.get("/metrics")).text()
        ):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        assert len(receiver.requests) == 3
    finally:
        loop.cancel()
        with pytest.raises(asyncio.CancelledError):
            await loop
