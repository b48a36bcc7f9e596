"""Issue 15, auth: reserved identities, owner-less service sessions, webhook replays, bounded
join tokens, the metrics token and what a member sees of the quota."""

from __future__ import annotations

import datetime as dt
import time

import jwt
from livekit.api import TokenVerifier

from store.enums import SessionStatus
from store.stores import Store
from tests.integration.api.conftest import Client, MakeClient
from tests.integration.api.support import (
    JWT_SECRET,
    LIVEKIT_KEY,
    LIVEKIT_SECRET,
    admin,
    error_of,
    seed_usage,
    user,
    webhook,
)

METRICS_TOKEN = "metrics-token-for-tests-0123456789abcdef"


async def test_sub_service_does_not_own_sessions_the_admin_key_created(
    client: Client, repo: Store
) -> None:
    response = await client.post("/api/sessions", json={"title": "ops"}, headers=admin("space-a"))
    assert response.status == 201
    created = await response.json()
    assert created["created_by"] is None  # nobody: no JWT can carry it
    path = f"/api/sessions/{created['slug']}"
    # a JWT naming the reserved user `service` is refused outright, on every route
    for method, route in (("POST", f"{path}/end"), ("DELETE", path), ("GET", path)):
        response = await client.request(method, route, headers=user("service"))
        assert await error_of(response) == (403, "reserved_identity"), (method, route)
    for sub in ("Service", "SERVICE"):
        response = await client.get(path, headers=user(sub))
        assert await error_of(response) == (403, "reserved_identity")
    # other members own nothing either; admins and the admin key still may
    assert await error_of(await client.post(f"{path}/end", headers=user("bob"))) == (
        403,
        "forbidden",
    )
    session = await repo.sessions.get_session(created["slug"])
    assert session is not None and session.status is SessionStatus.CREATED
    assert (await client.post(f"{path}/end", headers=admin())).status == 200
    # the admin key acting for a user still makes that user the owner
    response = await client.post(
        "/api/sessions", json={}, headers=admin("space-a", user_id="carol")
    )
    assert (await response.json())["created_by"] == "carol"


async def test_nobody_gets_a_join_token_with_the_bots_identity(
    make_client: MakeClient, repo: Store
) -> None:
    client = await make_client(bot_identity="scribe")
    session = await repo.sessions.create_session(space_id="space-a", created_by="alice")
    path = f"/api/sessions/{session.slug}/token"
    for headers in (
        user("scribe"),
        user("Scribe"),
        user("service"),
        admin(user_id="scribe"),
        admin(user_id="service"),
    ):
        assert await error_of(await client.get(path, headers=headers)) == (
            403,
            "reserved_identity",
        )
    # the default bot identity is a plain user id when the bot is named otherwise
    assert (await client.get(path, headers=user("transcriber"))).status == 200


async def test_jwt_without_exp_or_with_a_long_lifetime_is_refused(client: Client) -> None:
    now = int(time.time())
    claims = {"sub": "alice", "space": "space-a", "role": "member"}
    forever = jwt.encode(claims, JWT_SECRET, algorithm="HS256")
    month = jwt.encode(
        claims | {"iat": now, "exp": now + 30 * 86400}, JWT_SECRET, algorithm="HS256"
    )
    hour = jwt.encode(claims | {"iat": now, "exp": now + 3600}, JWT_SECRET, algorithm="HS256")
    for token in (forever, month):
        response = await client.get("/api/sessions", headers={"Authorization": f"Bearer {token}"})
        assert await error_of(response) == (401, "unauthorized")
    response = await client.get("/api/sessions", headers={"Authorization": f"Bearer {hour}"})
    assert response.status == 200


async def test_join_tokens_are_short_lived_scoped_and_end_with_the_session(
    make_client: MakeClient, repo: Store
) -> None:
    client = await make_client(api_join_token_ttl_minutes=5, session_expire_hours=1)
    session = await repo.sessions.create_session(space_id="space-a", created_by="alice")
    path = f"/api/sessions/{session.slug}/token"
    verifier = TokenVerifier(LIVEKIT_KEY, LIVEKIT_SECRET)

    body = await (await client.get(path, headers=user("boss", role="admin"))).json()
    claims = verifier.verify(body["token"])
    exp = jwt.decode(body["token"], options={"verify_signature": False})["exp"]
    assert exp - time.time() <= 5 * 60 + 1
    assert dt.datetime.fromisoformat(body["expires_at"]).timestamp() == exp
    assert claims.video is not None and claims.video.can_publish and not claims.video.room_admin
    assert body["can_publish"] is True

    body = await (await client.get(path, params={"speak": "false"}, headers=user("eve"))).json()
    claims = verifier.verify(body["token"])
    assert claims.video is not None and claims.video.can_subscribe
    assert not claims.video.can_publish and body["can_publish"] is False

    # a CREATED session expires SESSION_EXPIRE_HOURS after creation: no token lasts longer
    old = await repo.sessions.create_session(
        space_id="space-a",
        created_by="alice",
        now=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=58),
    )
    body = await (await client.get(f"/api/sessions/{old.slug}/token", headers=user("a"))).json()
    exp = jwt.decode(body["token"], options={"verify_signature": False})["exp"]
    assert exp <= (old.created_at + dt.timedelta(hours=1)).timestamp()
    # and an ended session gives none
    await repo.sessions.end_session(session.id)
    assert await error_of(await client.get(path, headers=user("a"))) == (
        409,
        "session_not_active",
    )


async def test_a_replayed_webhook_is_acknowledged_and_changes_nothing(
    client: Client, repo: Store
) -> None:
    session = await repo.sessions.create_session(space_id="space-a", created_by="alice")
    t = int(time.time())
    left = webhook("participant_left", session.slug, "bob", created_at=t + 5)
    for delivery, outcome in (
        (webhook("participant_joined", session.slug, "bob", created_at=t), "joined"),
        (left, "left"),
        (webhook("participant_joined", session.slug, "bob", created_at=t + 10), "joined"),
        (left, "duplicate"),  # the captured, still validly signed request, sent again
    ):
        response = await client.post("/webhooks/livekit", data=delivery[0], headers=delivery[1])
        assert (response.status, (await response.json())["outcome"]) == (200, outcome)
    (bob,) = await repo.sessions.list_participants(session.id)
    assert bob.left_at is None  # bob is in the room: the replayed leave did nothing

    # an event id already handled is refused whatever the body, until it is swept
    finished = webhook("room_finished", session.slug, event_id="EV_fixed")
    again = webhook("room_finished", session.slug, event_id="EV_fixed")
    for delivery, outcome in ((finished, "session_ended"), (again, "duplicate")):
        response = await client.post("/webhooks/livekit", data=delivery[0], headers=delivery[1])
        assert (await response.json())["outcome"] == outcome

    no_id = webhook("room_finished", session.slug, event_id="")
    response = await client.post("/webhooks/livekit", data=no_id[0], headers=no_id[1])
    assert await error_of(response) == (400, "bad_request")


async def test_webhook_ids_are_kept_until_their_signature_expires(repo: Store) -> None:
    now = dt.datetime.now(dt.UTC)
    expires = now + dt.timedelta(minutes=11)
    assert await repo.livekit_events.remember("EV_a", expires_at=expires)
    assert not await repo.livekit_events.remember("EV_a", expires_at=expires)
    assert await repo.livekit_events.sweep(now=now + dt.timedelta(minutes=10)) == 0
    assert not await repo.livekit_events.remember("EV_a", expires_at=expires)
    assert await repo.livekit_events.sweep(now=now + dt.timedelta(minutes=12)) == 1
    assert await repo.livekit_events.remember("EV_a", expires_at=expires)


async def test_metrics_behind_a_bearer_token_when_configured(
    client: Client, make_client: MakeClient
) -> None:
    assert (await client.get("/metrics")).status == 200  # unset: open, as before
    guarded = await make_client(metrics_token=METRICS_TOKEN)
    assert await error_of(await guarded.get("/metrics")) == (401, "unauthorized")
    wrong = {"Authorization": "Bearer not-the-token-0123456789abcdef0123"}
    assert (await guarded.get("/metrics", headers=wrong)).status == 401
    response = await guarded.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert response.status == 200 and "transcriber_" in await response.text()


async def test_members_see_the_quota_not_the_spaces_use(client: Client, repo: Store) -> None:
    session = await repo.sessions.create_session(space_id="space-a", created_by="alice")
    await seed_usage(repo, session, "alice", "125")  # 3 billed minutes
    member = await (await client.get("/api/quota", headers=user("bob"))).json()
    assert member["used_minutes"] is None and "monthly_minutes" in member
    for headers in (user("boss", role="admin"), admin("space-a")):
        assert (await (await client.get("/api/quota", headers=headers)).json())["used_minutes"] == 3
