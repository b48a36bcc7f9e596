"""LiveKit webhooks: verified events drive sessions; bad signatures are 401 and change nothing."""

from __future__ import annotations

import base64
import hashlib
import time

import pytest
from livekit.api import AccessToken
from livekit.protocol.models import ParticipantInfo

from store.enums import JobStatus, SessionStatus
from store.records import SessionRecord
from store.stores import Store
from tests.integration.api.conftest import Client, MakeClient
from tests.integration.api.support import LIVEKIT_KEY, LIVEKIT_SECRET, seed_usage, webhook

PATH = "/webhooks/livekit"


async def _session(repo: Store) -> SessionRecord:
    return await repo.sessions.create_session(space_id="space-a", created_by="alice")


async def _post(client: Client, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str]]:
    response = await client.post(PATH, data=body, headers=headers)
    return response.status, await response.json()


async def test_participant_joined_left_and_room_finished(client: Client, repo: Store) -> None:
    session = await _session(repo)
    status, ack = await _post(
        client, *webhook("participant_joined", session.slug, "alice", name="Алиса")
    )
    assert (status, ack["outcome"]) == (200, "joined")
    live = await repo.sessions.get_session(session.slug)
    assert live is not None and live.status is SessionStatus.LIVE
    (participant,) = await repo.sessions.list_participants(session.id)
    assert (participant.identity, participant.name, participant.user_id) == (
        "alice",
        "Алиса",
        "alice",
    )
    job = await repo.jobs.get_job(session.id)
    assert job is not None and job.status is JobStatus.REQUESTED

    status, ack = await _post(client, *webhook("participant_left", session.slug, "alice"))
    assert (status, ack["outcome"]) == (200, "left")
    (participant,) = await repo.sessions.list_participants(session.id)
    assert participant.left_at is not None

    status, ack = await _post(client, *webhook("room_finished", session.slug))
    assert (status, ack["outcome"]) == (200, "session_ended")
    ended = await repo.sessions.get_session(session.slug)
    assert ended is not None and ended.status is SessionStatus.ENDED
    job = await repo.jobs.get_job(session.id)
    assert job is not None and job.status is JobStatus.STOPPED
    assert job.stop_reason == "room_finished"


async def test_agents_are_not_participants(client: Client, repo: Store) -> None:
    session = await _session(repo)
    for kind in (ParticipantInfo.Kind.AGENT, ParticipantInfo.Kind.EGRESS):
        status, ack = await _post(
            client, *webhook("participant_joined", session.slug, "transcriber-bot", kind=kind)
        )
        assert (status, ack["outcome"]) == (200, "not_a_person")
    assert await repo.sessions.list_participants(session.id) == []
    assert await repo.jobs.get_job(session.id) is None
    unchanged = await repo.sessions.get_session(session.slug)
    assert unchanged is not None and unchanged.status is SessionStatus.CREATED
    # a SIP caller is a person, but its identity is not a user id
    await _post(
        client,
        *webhook("participant_joined", session.slug, "sip_+100", kind=ParticipantInfo.Kind.SIP),
    )
    (sip,) = await repo.sessions.list_participants(session.id)
    assert sip.identity == "sip_+100" and sip.user_id is None


@pytest.mark.parametrize("case", ["wrong_secret", "tampered_body", "no_signature", "garbage"])
async def test_bad_signature_is_401_and_changes_nothing(
    client: Client, repo: Store, case: str
) -> None:
    session = await _session(repo)
    body, headers = webhook("participant_joined", session.slug, "mallory")
    if case == "wrong_secret":
        body, headers = webhook(
            "participant_joined",
            session.slug,
            "mallory",
            secret="another-secret-0123456789abcdef0123456789",
        )
    elif case == "tampered_body":
        body = body.replace(b"mallory", b"mall0ry")
    elif case == "no_signature":
        del headers["Authorization"]
    else:
        headers["Authorization"] = "Bearer garbage"
    response = await client.post(PATH, data=body, headers=headers)
    assert response.status == 401
    assert (await response.json())["error"]["code"] == "unauthorized"
    assert await repo.sessions.list_participants(session.id) == []
    assert await repo.jobs.get_job(session.id) is None
    unchanged = await repo.sessions.get_session(session.slug)
    assert unchanged == session


async def test_room_finished_with_bad_signature_does_not_end(client: Client, repo: Store) -> None:
    session = await _session(repo)
    body, headers = webhook(
        "room_finished", session.slug, secret="not-the-livekit-secret-0000000000000000"
    )
    assert (await client.post(PATH, data=body, headers=headers)).status == 401
    unchanged = await repo.sessions.get_session(session.slug)
    assert unchanged is not None and unchanged.status is SessionStatus.CREATED


async def test_redelivery_is_idempotent(client: Client, repo: Store) -> None:
    session = await _session(repo)
    t = int(time.time())
    joined = webhook("participant_joined", session.slug, "bob", name="Боб", created_at=t)
    left = webhook("participant_left", session.slug, "bob", event_id="EV_2", created_at=t + 5)
    finished = webhook("room_finished", session.slug, event_id="EV_3", created_at=t + 9)
    for delivery in (joined, joined, left, joined, left):
        status, _ = await _post(client, *delivery)
        assert status == 200
    (bob,) = await repo.sessions.list_participants(session.id)
    assert bob.left_at is not None and int(bob.left_at.timestamp()) == t + 5  # stale join ignored
    status, ack = await _post(client, *joined)
    assert ack["outcome"] == "duplicate"  # the same event id: recognised as a replay
    # a join delivered late (another id, an older time than the recorded leave) is stale
    late = webhook("participant_joined", session.slug, "bob", created_at=t + 1)
    status, ack = await _post(client, *late)
    assert ack["outcome"] == "stale"
    for _ in range(2):
        await _post(client, *finished)
    ended = await repo.sessions.get_session(session.slug)
    assert ended is not None and ended.status is SessionStatus.ENDED
    assert ended.ended_at is not None and int(ended.ended_at.timestamp()) == t + 9
    # a join to an ended room changes nothing
    _, ack = await _post(client, *webhook("participant_joined", session.slug, "late"))
    assert ack["outcome"] == "session_over"
    assert [p.identity for p in await repo.sessions.list_participants(session.id)] == ["bob"]


async def test_unknown_rooms_and_events_are_acknowledged(client: Client) -> None:
    for body_headers in (
        webhook("participant_joined", "no-such-room", "x"),
        webhook("participant_joined", "bad room name!", "x"),
        webhook("track_published", "no-such-room", "x"),
        webhook("room_started", "no-such-room"),
    ):
        status, ack = await _post(client, *body_headers)
        assert status == 200 and ack["outcome"] in ("unknown_room", "ignored")


async def test_signed_non_event_is_400(client: Client) -> None:
    body = b"{not json"
    digest = base64.b64encode(hashlib.sha256(body).digest()).decode()
    token = AccessToken(LIVEKIT_KEY, LIVEKIT_SECRET).with_sha256(digest).to_jwt()
    response = await client.post(PATH, data=body, headers={"Authorization": token})
    assert response.status == 400


async def test_webhook_limits_are_respected(make_client: MakeClient, repo: Store) -> None:
    client = await make_client(space_monthly_minutes_quota=1)
    session = await _session(repo)
    await seed_usage(repo, session, "early", "30")  # 1 billed minute: the quota is used up
    await repo.jobs.stop_transcription(session.id)
    _, ack = await _post(client, *webhook("participant_joined", session.slug, "carol"))
    assert ack["outcome"] == "joined_quota_exceeded"
    assert await repo.jobs.get_job(session.id) is None
