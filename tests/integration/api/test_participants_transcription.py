"""Join tokens, participant registration, transcription start/stop, limits and quota."""

from __future__ import annotations

from livekit.api import TokenVerifier

from store.enums import JobStatus, ParticipantRole, SessionStatus
from store.records import SessionRecord
from store.stores import Store
from tests.integration.api.conftest import Client, MakeClient
from tests.integration.api.support import (
    LIVEKIT_KEY,
    LIVEKIT_SECRET,
    admin,
    error_of,
    seed_usage,
    user,
)


async def _session(repo: Store, owner: str = "alice", space: str = "space-a") -> SessionRecord:
    return await repo.sessions.create_session(space_id=space, created_by=owner, title="t")


async def test_token_is_a_livekit_access_token_for_the_caller(client: Client, repo: Store) -> None:
    session = await _session(repo)
    response = await client.get(
        f"/api/sessions/{session.slug}/token", params={"name": "Иван"}, headers=user("ivan")
    )
    assert response.status == 200
    body = await response.json()
    assert body["room"] == session.slug and body["identity"] == "ivan"
    assert body["url"] == "ws://livekit.test:7880"
    claims = TokenVerifier(LIVEKIT_KEY, LIVEKIT_SECRET).verify(body["token"])
    assert claims.identity == "ivan" and claims.name == "Иван"
    assert claims.video is not None
    assert claims.video.room == session.slug and claims.video.room_join
    assert claims.video.can_publish and claims.video.can_subscribe
    assert not claims.video.room_admin
    admin_body = await (
        await client.get(f"/api/sessions/{session.slug}/token", headers=user("boss", role="admin"))
    ).json()
    admin_claims = TokenVerifier(LIVEKIT_KEY, LIVEKIT_SECRET).verify(admin_body["token"])
    # admins moderate through LiveKit's server API, not with a participant's token
    assert admin_claims.video is not None and not admin_claims.video.room_admin


async def test_token_failures(client: Client, make_client: MakeClient, repo: Store) -> None:
    session = await _session(repo)
    path = f"/api/sessions/{session.slug}/token"
    assert await error_of(await client.get(path, headers=admin())) == (400, "user_required")
    assert (await client.get(path, headers=admin(user_id="svc"))).status == 200
    assert await error_of(await client.get(path)) == (401, "unauthorized")
    await repo.sessions.end_session(session.id)
    assert await error_of(await client.get(path, headers=user("a"))) == (409, "session_not_active")
    unconfigured = await make_client(livekit_api_key=None, livekit_api_secret=None)
    other = await _session(repo)
    response = await unconfigured.get(f"/api/sessions/{other.slug}/token", headers=user("a"))
    assert await error_of(response) == (503, "livekit_not_configured")


async def test_registration_marks_live_and_requests_transcription(
    client: Client, repo: Store
) -> None:
    session = await _session(repo, owner="alice")
    path = f"/api/sessions/{session.slug}/participants/join"
    response = await client.post(path, json={"name": "Алиса"}, headers=user("alice"))
    assert response.status == 200, await response.text()
    body = await response.json()
    assert body["participant"]["identity"] == "alice"
    assert body["participant"]["name"] == "Алиса"
    assert body["participant"]["role"] == ParticipantRole.HOST.value
    assert body["session"]["status"] == "LIVE" and body["session"]["started_at"]
    assert body["session"]["transcription"]["status"] == "REQUESTED"
    assert body["transcription_refused"] is None
    guest = await (await client.post(path, headers=user("bob"))).json()
    assert guest["participant"]["role"] == "GUEST" and guest["participant"]["name"] == ""
    listed = await (
        await client.get(f"/api/sessions/{session.slug}/participants", headers=user("x"))
    ).json()
    assert [p["identity"] for p in listed["items"]] == ["alice", "bob"]
    assert listed["items"][0]["user_id"] == "alice" and listed["items"][0]["left_at"] is None


async def test_registration_failures(client: Client, repo: Store) -> None:
    session = await _session(repo)
    path = f"/api/sessions/{session.slug}/participants/join"
    assert await error_of(await client.post(path, json={"name": 1}, headers=user("a"))) == (
        422,
        "validation_error",
    )
    response = await client.post(path, json={"nick": "x"}, headers=user("a"))
    assert await error_of(response) == (422, "validation_error")
    json_type = {"Content-Type": "application/json"}
    response = await client.post(path, data=b"{oops", headers=user("a") | json_type)
    assert await error_of(response) == (400, "invalid_json")
    response = await client.post(path, data=b"\xff\xfe", headers=user("a") | json_type)
    assert await error_of(response) == (400, "invalid_json")
    response = await client.post(path, data=b"[1]", headers=user("a") | json_type)
    assert await error_of(response) == (422, "validation_error")
    response = await client.post(path, data=b"name=x", headers=user("a"))
    assert await error_of(response) == (415, "unsupported_media_type")
    response = await client.post(path, json={"name": "a\u0000b"}, headers=user("a"))
    assert await error_of(response) == (422, "validation_error")
    assert await error_of(await client.post(path, json={}, headers=admin())) == (
        400,
        "user_required",
    )
    await repo.sessions.end_session(session.id)
    response = await client.post(path, json={}, headers=user("a"))
    assert await error_of(response) == (409, "session_not_active")
    assert await repo.sessions.list_participants(session.id) == []


async def test_start_and_stop_transcription(client: Client, repo: Store) -> None:
    session = await _session(repo)
    base = f"/api/sessions/{session.slug}/transcription"
    started = await client.post(f"{base}/start", headers=user("alice"))
    assert started.status == 200
    assert (await started.json())["transcription"]["status"] == "REQUESTED"
    again = await (await client.post(f"{base}/start", headers=user("alice"))).json()
    assert again["transcription"]["status"] == "REQUESTED"  # idempotent
    stopped = await (await client.post(f"{base}/stop", headers=user("alice"))).json()
    assert stopped["transcription"]["status"] == "STOPPED"
    assert stopped["transcription"]["stop_reason"] == "stopped_by_user"
    # a later join does not undo the user's stop; start does
    joined = await (
        await client.post(f"/api/sessions/{session.slug}/participants/join", headers=user("b"))
    ).json()
    assert joined["transcription_refused"] == "stopped_by_user"
    assert joined["session"]["transcription"]["status"] == "STOPPED"
    restarted = await (await client.post(f"{base}/start", headers=user("alice"))).json()
    assert restarted["transcription"]["status"] == "REQUESTED"
    job = await repo.jobs.get_job(session.id)
    assert job is not None and job.status is JobStatus.REQUESTED


async def test_transcription_failures(client: Client, repo: Store) -> None:
    session = await _session(repo)
    base = f"/api/sessions/{session.slug}/transcription"
    assert await error_of(await client.post(f"{base}/start")) == (401, "unauthorized")
    none = await (await client.post(f"{base}/stop", headers=user("a"))).json()
    assert none["transcription"] is None  # nothing to stop: unchanged
    await repo.sessions.end_session(session.id)
    response = await client.post(f"{base}/start", headers=user("a"))
    assert await error_of(response) == (409, "session_not_active")
    other_space = await _session(repo, space="space-b")
    response = await client.post(
        f"/api/sessions/{other_space.slug}/transcription/start", headers=user("a")
    )
    assert await error_of(response) == (404, "not_found")


async def test_limit_tracks_per_session(make_client: MakeClient, repo: Store) -> None:
    client = await make_client(max_tracks_per_session=2)
    session = await _session(repo)
    await seed_usage(repo, session, "p1", "10", close=False)
    path = f"/api/sessions/{session.slug}/transcription/start"
    assert (await client.post(path, headers=user("alice"))).status == 200
    await seed_usage(repo, session, "p2", "10", close=False)
    response = await client.post(path, headers=user("alice"))
    assert await error_of(response) == (429, "session_track_limit")
    # registration still works, and says why transcription was not requested
    await repo.jobs.stop_transcription(session.id)
    joined = await (
        await client.post(f"/api/sessions/{session.slug}/participants/join", headers=user("c"))
    ).json()
    assert joined["transcription_refused"] == "session_track_limit"
    assert joined["participant"]["identity"] == "c"


async def test_limit_tracks_per_user(make_client: MakeClient, repo: Store) -> None:
    client = await make_client(max_tracks_per_user=1)
    first = await _session(repo)
    await seed_usage(repo, first, "alice", "10", close=False)
    second = await _session(repo)
    response = await client.post(
        f"/api/sessions/{second.slug}/transcription/start", headers=user("alice")
    )
    assert await error_of(response) == (429, "user_track_limit")
    response = await client.post(
        f"/api/sessions/{second.slug}/transcription/start", headers=user("bob")
    )
    assert response.status == 200


async def test_monthly_quota_default_and_per_space(make_client: MakeClient, repo: Store) -> None:
    client = await make_client(space_monthly_minutes_quota=5)
    session = await _session(repo)
    await seed_usage(repo, session, "p1", "240")  # 4 billed minutes
    path = f"/api/sessions/{session.slug}/transcription/start"
    assert (await client.post(path, headers=user("a"))).status == 200
    await seed_usage(repo, session, "p2", "1")  # 1 more: 5 of 5 used
    assert await error_of(await client.post(path, headers=user("a"))) == (429, "quota_exceeded")

    quota = await (await client.get("/api/quota", headers=user("a", role="admin"))).json()
    assert quota == {
        "space_id": "space-a",
        "monthly_minutes": 5,
        "source": "default",
        "used_minutes": 5,
    }
    # only the admin key sets a space's own quota
    response = await client.put("/api/quota", json={"monthly_minutes": 100}, headers=user("a"))
    assert await error_of(response) == (403, "forbidden")
    response = await client.put(
        "/api/quota", json={"monthly_minutes": 100}, headers=user("a", role="admin")
    )
    assert await error_of(response) == (403, "forbidden")
    response = await client.put(
        "/api/quota", json={"monthly_minutes": -1}, headers=admin("space-a")
    )
    assert await error_of(response) == (422, "validation_error")
    raised = await client.put("/api/quota", json={"monthly_minutes": 100}, headers=admin("space-a"))
    assert (await raised.json())["source"] == "space"
    assert (await client.post(path, headers=user("a"))).status == 200
    unlimited = await client.put(
        "/api/quota", json={"monthly_minutes": None}, headers=admin("space-a")
    )
    assert (await unlimited.json())["monthly_minutes"] is None
    cleared = await (await client.delete("/api/quota", headers=admin("space-a"))).json()
    assert cleared["source"] == "default" and cleared["monthly_minutes"] == 5
    assert session.status is SessionStatus.CREATED
