"""Keep-alive, dropped clients, reconnection, and stopping the server with clients attached."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator

import aiohttp
import pytest
from livekit import rtc

from devserver.launcher import DevServerProcess
from tests.support.netns import VethNamespace

from .conftest import REPO_ROOT, start_devserver
from .helpers import (
    EVENT_TIMEOUT_S,
    admin_token,
    connected,
    play_forever,
    publish_audio,
    room_name,
    token,
)

pytestmark = pytest.mark.e2e

PING_TIMEOUT_S = 4


@pytest.fixture(scope="module")
def short_ping_server(netns: VethNamespace) -> Iterator[DevServerProcess]:
    """Clients ping every second and are dropped after 4 silent seconds."""
    server = start_devserver(netns, "--ping-interval", "1", "--ping-timeout", str(PING_TIMEOUT_S))
    yield server
    server.cleanup()


async def start_client_process(url: str, jwt_token: str) -> asyncio.subprocess.Process:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.e2e.devserver.client_process",
        url,
        jwt_token,
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), EVENT_TIMEOUT_S)
    assert line.strip() == b"connected"
    return process


async def stop_process(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        os.kill(process.pid, signal.SIGKILL)
    await process.wait()


@pytest.mark.parametrize("freeze", [False, True], ids=["killed", "frozen"])
async def test_vanished_client_is_removed(
    short_ping_server: DevServerProcess, freeze: bool
) -> None:
    """A killed client closes its socket; a frozen one just stops pinging. Both are removed.

    The watching client stays connected throughout, longer than the ping timeout: its own
    pings keep it in the room.
    """
    room = room_name("gone")
    events = ["participant_connected", "participant_disconnected", "track_subscribed"]
    async with connected(short_ping_server.url, token("watcher", room), events=events) as (
        watcher,
        watcher_events,
    ):
        process = await start_client_process(short_ping_server.url, token("ghost", room))
        try:
            await watcher_events.wait("track_subscribed", lambda t, pub, p: p.identity == "ghost")
            os.kill(process.pid, signal.SIGSTOP if freeze else signal.SIGKILL)
            (left,) = await watcher_events.wait("participant_disconnected")
            assert left.identity == "ghost"
            assert watcher.connection_state == rtc.ConnectionState.CONN_CONNECTED
        finally:
            await stop_process(process)


async def test_dropped_signal_connection_recovers(devserver: DevServerProcess) -> None:
    """The server cuts alice's WebSocket; the SDK reconnects and media and data flow again."""
    room = room_name("drop")
    url = devserver.url
    async with (
        connected(url, token("bob", room), events=["track_subscribed", "data_received"]) as (
            _,
            bob,
        ),
        connected(url, token("alice", room), events=["reconnecting", "reconnected"]) as (
            alice,
            alice_events,
        ),
    ):
        source, _, _ = await publish_audio(alice)
        player = asyncio.create_task(play_forever(source))
        try:
            await bob.wait("track_subscribed")
            async with (
                aiohttp.ClientSession() as session,
                session.post(
                    f"{devserver.http_url}/devserver/v1/drop-signal",
                    json={"room": room, "identity": "alice"},
                    headers={"Authorization": f"Bearer {admin_token(room, room_admin=True)}"},
                ) as response,
            ):
                assert response.status == 200, await response.text()
            await alice_events.wait("reconnecting")
            await alice_events.wait("reconnected")
            # the rejoined session republishes its track and bob subscribes to it again
            await bob.wait("track_subscribed")
            await alice.local_participant.publish_data(b"after reconnect")
            await bob.wait("data_received", lambda p: p.data == b"after reconnect")
        finally:
            player.cancel()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "ctrl-c"])
async def test_server_stops_cleanly_with_clients_connected(
    netns: VethNamespace, signum: int
) -> None:
    server = start_devserver(netns)
    try:
        room = room_name("stop")
        async with connected(server.url, token("alice", room), events=["disconnected"]) as (
            alice,
            events,
        ):
            source, _, _ = await publish_audio(alice)
            player = asyncio.create_task(play_forever(source))
            try:
                os.kill(server.pid, signum)
                assert await events.wait("disconnected") == (rtc.DisconnectReason.SERVER_SHUTDOWN,)
                assert await asyncio.to_thread(server.wait, 30.0) == 0
            finally:
                player.cancel()
        assert "dev server stopped" in server.log_tail()
    finally:
        server.cleanup()
