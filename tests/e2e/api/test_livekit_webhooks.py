"""A LiveKit server's own signed webhooks drive the API: LIVE on first join, ENDED when it ends.

Nothing here signs a webhook by hand: a real participant (the Python SDK) joins and leaves a room
on the server, and the server's webhooks reach the API process over the veth pair. Run against our
dev server and the official LiveKit server.
"""

from __future__ import annotations

from typing import Any

from livekit import rtc

from bot.simulate import SimulatedSpeaker
from lkserver import LiveKitServer
from store.enums import JobStatus, SessionStatus
from store.stores import Store
from tests.e2e.api.conftest import ApiProcess, poll


async def webhook_counts(api: ApiProcess) -> dict[tuple[str, str], float]:
    import aiohttp

    async with aiohttp.ClientSession() as http, http.get(f"{api.base}/metrics") as reply:
        text = await reply.text()
    counts: dict[tuple[str, str], float] = {}
    for line in text.splitlines():
        if line.startswith("transcriber_webhooks_total{"):
            labels = dict(
                part.split("=", 1)
                for part in line[line.index("{") + 1 : line.index("}")].split(",")
            )
            key = (labels["event"].strip('"'), labels["outcome"].strip('"'))
            counts[key] = float(line.split()[-1])
    return counts


async def test_server_webhooks_make_the_session_live_request_the_job_and_end_it(
    api_and_livekit: tuple[ApiProcess, LiveKitServer], repo: Store
) -> None:
    api, livekit = api_and_livekit
    created: Any = await api.call("POST", "/api/sessions", body={"title": "Webhook meeting"})
    slug = created["slug"]
    assert created["status"] == "CREATED"
    joined: Any = await api.call("GET", f"/api/sessions/{slug}/token?name=Alice", user="alice")

    alice = SimulatedSpeaker("alice")
    await alice.join(livekit.url, joined["token"])

    async def live_and_requested() -> bool:
        # one webhook, two writes: the participant (the session goes LIVE), then the job
        session = await repo.sessions.get_session(slug)
        if session is None or session.status is not SessionStatus.LIVE:
            return False
        return await repo.jobs.get_job(session.id) is not None

    await poll(live_and_requested)
    session = await repo.sessions.get_session(slug)
    assert session is not None
    job = await repo.jobs.get_job(session.id)
    assert job is not None and job.status is JobStatus.REQUESTED, job
    (participant,) = await repo.sessions.list_participants(session.id)
    assert (participant.identity, participant.name) == ("alice", "Alice")

    await alice.pause(1.0)
    await alice.leave()

    async def ended() -> bool:
        current = await repo.sessions.get_session(slug)
        return current is not None and current.status is SessionStatus.ENDED

    await poll(ended)  # participant_left, then room_finished after the departure timeout
    job = await repo.jobs.get_job(session.id)
    assert job is not None and job.status is JobStatus.STOPPED
    assert job.stop_reason == "room_finished"
    (participant,) = await repo.sessions.list_participants(session.id)
    assert participant.left_at is not None

    counts = await webhook_counts(api)
    assert counts.get(("participant_joined", "joined"), 0) >= 1
    assert counts.get(("room_finished", "session_ended"), 0) >= 1
    assert counts.get(("unverified", "rejected"), 0) == 0, "every webhook verified"


async def test_a_server_with_another_secret_changes_nothing(
    api_and_livekit: tuple[ApiProcess, LiveKitServer], repo: Store
) -> None:
    """A token the server refuses never joins, so no webhook makes the session live."""
    api, livekit = api_and_livekit
    created: Any = await api.call("POST", "/api/sessions", body={"title": "Refused"})
    from tests.e2e.devserver.helpers import token

    room = rtc.Room()
    bad = token("mallory", created["slug"], secret="another-secret-0123456789abcdefghijk")
    try:
        await room.connect(livekit.url, bad)
    except rtc.ConnectError:
        pass
    else:
        await room.disconnect()
        raise AssertionError("a token signed with another secret was accepted")
    session = await repo.sessions.get_session(created["slug"])
    assert session is not None and session.status is SessionStatus.CREATED
    assert await repo.sessions.list_participants(session.id) == []
