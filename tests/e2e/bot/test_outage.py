"""LiveKit outage: the official server killed (SIGKILL) mid-meeting and started again.

Down for 3 s, the SDKs reconnect by themselves; down for 60 s, they give up (the clients here then
rejoin, as a meeting app does on ``disconnected``). Either way the bot must come back while the
session is live: captions resume within 10 s of the server being back, and every final the room
saw is stored exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from livekit import rtc

from bot.simulate import SimulatedSpeaker, Turn
from lkserver import OfficialServerProcess
from store.enums import JobStatus
from store.stores import Store
from tests.e2e.bot.conftest import worker_env_for
from tests.e2e.bot.helpers import CaptionListener, WorkerProcess
from tests.e2e.bot.test_bot import (
    JFK,
    QUILTER,
    SONNET,
    join_speaker,
    new_session,
    stored_finals,
    wait_job,
)
from tests.support.livekit import official_config, start_official
from tests.support.netns import VethNamespace

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

RESUME_WITHIN_S = 10.0


@pytest.fixture
def outage_server(bot_netns: VethNamespace) -> Iterator[OfficialServerProcess]:
    """A server of this test's own (it gets killed), on ports apart from the shared one's."""
    server = start_official(
        bot_netns, official_config(bot_netns, node=1, departure_timeout_s=2), name="outage"
    )
    try:
        yield server
    finally:
        server.cleanup()


async def say_all(speaker: SimulatedSpeaker, *turns: Turn) -> None:
    for turn in turns:
        await speaker.say(turn)


async def settled(room: rtc.Room, timeout_s: float = 60.0) -> None:
    """Wait until the SDK is connected again or has given up."""
    deadline = time.monotonic() + timeout_s
    while room.connection_state not in (
        rtc.ConnectionState.CONN_CONNECTED,
        rtc.ConnectionState.CONN_DISCONNECTED,
    ):
        assert time.monotonic() < deadline, "the SDK neither reconnected nor gave up"
        await asyncio.sleep(0.2)


def connected(room: rtc.Room) -> bool:
    return room.connection_state == rtc.ConnectionState.CONN_CONNECTED


@pytest.mark.parametrize("down_s", [3.0, 60.0])
async def test_server_outage_bot_rejoins_and_no_final_is_lost_or_doubled(
    down_s: float,
    outage_server: OfficialServerProcess,
    repo: Store,
    database_url: str,
    tmp_path: Path,
) -> None:
    url = outage_server.url
    session = await new_session(repo)
    worker = WorkerProcess("w1", worker_env_for(url, database_url, tmp_path), tmp_path)
    listeners: list[CaptionListener] = []
    speech: asyncio.Task[None] | None = None
    try:
        await worker.wait_ready()
        listener = CaptionListener()
        listeners.append(listener)
        await listener.join(url, session.slug)
        alice = await join_speaker(url, session.slug, "alice")
        await wait_job(repo, session.id, lambda j: j.status == JobStatus.RUNNING)
        speech = asyncio.create_task(alice.say(Turn(SONNET, pause_s=1.0)))
        await listener.wait_for(lambda lis: bool(lis.finals("alice")))

        outage_server.kill()
        await asyncio.sleep(down_s)
        outage_server.start()
        back_at = time.monotonic()

        # A meeting app rejoins when its SDK gave up (``disconnected``); while the SDK is still
        # reconnecting it waits (a second "carol" would take the identity from the first).
        for room in (listener.room, alice.room):
            await settled(room)
        if not connected(listener.room):
            listener = CaptionListener()
            listeners.append(listener)
            await listener.join(url, session.slug)
        if not connected(alice.room):
            speech.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await speech
            with contextlib.suppress(Exception):
                await alice.room.disconnect()
            alice = await join_speaker(url, session.slug, "alice")
            # other words than before the outage, so a final stored twice would show
            speech = asyncio.create_task(say_all(alice, Turn(QUILTER), Turn(JFK, pause_s=1.0)))

        def resumed(lis: CaptionListener) -> bool:
            return any(c.at > back_at and c.sender == "alice" and c.text for c in lis.captions)

        await listener.wait_for(resumed, timeout_s=60.0)
        first_after = min(
            c.at for c in listener.captions if c.at > back_at and c.sender == "alice" and c.text
        )
        print(f"outage {down_s:.0f} s: captions resumed {first_after - back_at:.1f} s after")
        assert first_after - back_at <= RESUME_WITHIN_S, (
            f"captions resumed {first_after - back_at:.1f} s after the server was back",
            worker.log()[-3000:],
        )
        await speech
        await alice.pause(1.5)
        await alice.leave()
        if down_s > 30:  # past the SDK's own reconnection: the worker rejoined the room itself
            rejoins = [
                line
                for line in (await worker.metrics()).splitlines()
                if line.startswith("transcriber_livekit_rejoins_total")
            ]
            assert rejoins and float(rejoins[0].split()[-1]) >= 1, rejoins

        published = {c.segment_id: c.text for lis in listeners for c in lis.finals()}
        deadline = time.monotonic() + 30.0
        while time.monotonic() < deadline:
            if {s[0] for s in await stored_finals(repo, session.id)} >= set(published):
                break
            await asyncio.sleep(0.5)
        stored = await stored_finals(repo, session.id)
        ids = [s[0] for s in stored]
        assert len(ids) == len(set(ids)), "no final stored twice"
        assert set(published) <= set(ids), "every final the room saw is stored"
        assert {s[1] for s in stored if s[0] in published} == set(published.values())
        texts = [s[1] for s in stored]
        assert len(texts) == len(set(texts)), f"the same words stored under two ids: {texts}"
    finally:
        if speech is not None:
            speech.cancel()
            with contextlib.suppress(BaseException):
                await speech
        for lis in listeners:
            with contextlib.suppress(Exception):
                await lis.leave()
        worker.stop()
