"""Participants and tracks as the SDK sees them: joins, leaves, late joins, mute, unpublish."""

from __future__ import annotations

import asyncio
import contextlib

import numpy as np
import pytest
from livekit import rtc

from devserver.launcher import DevServerProcess

from .helpers import (
    Events,
    Recorder,
    connected,
    dominant_frequency_hz,
    forwarding_stopped,
    play_forever,
    publish_audio,
    room_name,
    token,
)

pytestmark = pytest.mark.e2e

# both signalling modes: one peer connection (/rtc/v1) and two (/rtc)
MODES = pytest.mark.parametrize("single_pc", [True, False], ids=["v1", "rtc"])

TRACK_EVENTS = [
    "participant_connected",
    "participant_disconnected",
    "track_subscribed",
    "track_unsubscribed",
    "track_published",
    "track_unpublished",
    "track_muted",
    "track_unmuted",
    "data_received",
    "disconnected",
]


async def frequency_of(track: rtc.Track, seconds: float = 1.5) -> float:
    recorder = Recorder(track)
    try:
        await recorder.wait_for_seconds(seconds + 0.5)
    finally:
        await recorder.aclose()
    samples = recorder.samples()
    return dominant_frequency_hz(samples[-int(seconds * 48_000) :])


async def test_joins_and_leaves_are_seen_and_hidden_stays_hidden(
    devserver: DevServerProcess,
) -> None:
    room = room_name()
    url = devserver.url
    async with connected(url, token("alice", room), events=TRACK_EVENTS) as (alice, alice_events):
        async with connected(url, token("observer", room, hidden=True), events=TRACK_EVENTS) as (
            observer,
            observer_events,
        ):
            async with connected(url, token("bob", room)) as (bob, _):
                (joined,) = await alice_events.wait("participant_connected")
                assert joined.identity == "bob"
                assert set(bob.remote_participants) == {"alice"}  # not the hidden observer
                assert set(alice.remote_participants) == {"bob"}
                # a hidden participant still sees everyone
                await observer_events.wait("participant_connected", lambda p: p.identity == "bob")
                assert set(observer.remote_participants) == {"alice", "bob"}
            (left,) = await alice_events.wait("participant_disconnected")
            assert left.identity == "bob"
            assert set(alice.remote_participants) == set()
        assert not alice_events.seen("participant_connected", lambda p: p.identity == "observer")


@MODES
async def test_late_joiner_receives_every_existing_track(
    devserver: DevServerProcess, single_pc: bool
) -> None:
    """Four speakers publish before the listener joins: more tracks than the SDK pre-offers."""
    options = rtc.RoomOptions(single_peer_connection=single_pc)
    room = room_name("late")
    frequencies = {"s1": 300.0, "s2": 450.0, "s3": 600.0, "s4": 750.0}
    async with contextlib.AsyncExitStack() as stack:
        players = []
        for identity, frequency in frequencies.items():
            speaker, _ = await stack.enter_async_context(
                connected(devserver.url, token(identity, room), options=options)
            )
            source, _, _ = await publish_audio(speaker)
            players.append(asyncio.create_task(play_forever(source, frequency)))
        try:
            _, events = await stack.enter_async_context(
                connected(devserver.url, token("late", room), options=options, events=TRACK_EVENTS)
            )
            subscribed = {}
            for _ in frequencies:
                track, _, participant = await events.wait("track_subscribed")
                subscribed[participant.identity] = track
            assert set(subscribed) == set(frequencies)
            measured = await asyncio.gather(*(frequency_of(t) for t in subscribed.values()))
            for identity, frequency in zip(subscribed, measured, strict=True):
                assert abs(frequency - frequencies[identity]) < 3.0, (identity, frequency)
        finally:
            for player in players:
                player.cancel()


@MODES
async def test_mute_unmute_unpublish_and_republish(
    devserver: DevServerProcess, single_pc: bool
) -> None:
    room = room_name("mute")
    url = devserver.url
    options = rtc.RoomOptions(single_peer_connection=single_pc)
    async with (
        connected(url, token("listener", room), options=options, events=TRACK_EVENTS) as (
            _,
            events,
        ),
        connected(url, token("speaker", room), options=options) as (speaker, _),
    ):
        source, track, publication = await publish_audio(speaker)
        player = asyncio.create_task(play_forever(source, 440.0))
        try:
            _, remote_publication, _ = await events.wait("track_subscribed")
            assert remote_publication.sid == publication.sid
            assert not remote_publication.muted
            assert remote_publication.mime_type == "audio/opus"  # what browsers read the codec from
            assert publication.mime_type == "audio/opus"  # from the TrackPublishedResponse

            track.mute()
            (_, muted) = await events.wait("track_muted")
            assert muted.sid == publication.sid and muted.muted
            track.unmute()
            (_, unmuted) = await events.wait("track_unmuted")
            assert unmuted.sid == publication.sid and not unmuted.muted

            await speaker.local_participant.unpublish_track(publication.sid)
            (_, gone, _) = await events.wait("track_unsubscribed")
            assert gone.sid == publication.sid
            (unpublished, _) = await events.wait("track_unpublished")
            assert unpublished.sid == publication.sid

            # publishing again reuses the freed media section; audio must flow again
            source2, _, publication2 = await publish_audio(speaker, "mic2")
            player.cancel()
            player = asyncio.create_task(play_forever(source2, 520.0))
            remote2, _, _ = await events.wait(
                "track_subscribed", lambda t, pub, p: pub.sid == publication2.sid
            )
            assert abs(await frequency_of(remote2) - 520.0) < 3.0
        finally:
            player.cancel()


async def test_three_rooms_at_once_stay_isolated(devserver: DevServerProcess) -> None:
    rooms = {room_name(f"iso{i}"): 300.0 + 150.0 * i for i in range(3)}
    async with contextlib.AsyncExitStack() as stack:
        listeners: dict[str, tuple[rtc.Room, Events]] = {}
        players = []
        for room, frequency in rooms.items():
            listener, events = await stack.enter_async_context(
                connected(devserver.url, token("listener", room), events=TRACK_EVENTS)
            )
            speaker, _ = await stack.enter_async_context(
                connected(devserver.url, token("speaker", room))
            )
            source, _, _ = await publish_audio(speaker)
            players.append(asyncio.create_task(play_forever(source, frequency)))
            listeners[room] = (listener, events)
            await speaker.local_participant.publish_data(room.encode(), topic="which-room")
        try:
            for room, frequency in rooms.items():
                listener, events = listeners[room]
                assert set(listener.remote_participants) == {"speaker"}
                track, _, _ = await events.wait("track_subscribed")
                assert abs(await frequency_of(track) - frequency) < 3.0
                (packet,) = await events.wait("data_received")
                assert packet.data == room.encode()
            for room in rooms:  # nothing from the other rooms arrived meanwhile
                _, events = listeners[room]
                assert events.unreturned("track_subscribed") == 0
                assert events.unreturned("data_received") == 0
        finally:
            for player in players:
                player.cancel()


async def test_room_closes_after_last_non_agent_leaves(devserver: DevServerProcess) -> None:
    """The agent does not keep the room open: it is disconnected when the room closes."""
    room = room_name("close")
    url = devserver.url
    async with connected(
        url, token("bot", room, kind="agent", hidden=True), events=TRACK_EVENTS
    ) as (
        _,
        bot_events,
    ):
        async with connected(url, token("human", room)):
            pass
        (reason,) = await bot_events.wait("disconnected")
        assert reason == rtc.DisconnectReason.ROOM_CLOSED


def test_frequency_helper_finds_a_tone() -> None:
    t = np.arange(48_000) / 48_000
    assert abs(dominant_frequency_hz(np.sin(2 * np.pi * 440 * t) * 1000) - 440) < 1.5


@MODES
async def test_unsubscribe_and_subscribe_again(
    devserver: DevServerProcess, single_pc: bool
) -> None:
    """Selective subscription: the listener turns a track off and on again."""
    room = room_name("resub")
    async with (
        connected(
            devserver.url,
            token("listener", room),
            options=rtc.RoomOptions(auto_subscribe=False, single_peer_connection=single_pc),
            events=TRACK_EVENTS,
        ) as (_, events),
        connected(devserver.url, token("speaker", room)) as (speaker, _),
    ):
        source, _, publication = await publish_audio(speaker)
        player = asyncio.create_task(play_forever(source, 610.0))
        try:
            (remote_publication, _) = await events.wait("track_published")
            assert remote_publication.sid == publication.sid
            assert events.unreturned("track_subscribed") == 0  # auto-subscribe is off
            for _ in range(2):
                remote_publication.set_subscribed(True)
                track, _, _ = await events.wait("track_subscribed")
                assert abs(await frequency_of(track) - 610.0) < 3.0
                remote_publication.set_subscribed(False)
                await events.wait("track_unsubscribed")
                # The SDK reports track_unsubscribed itself, before its UpdateSubscription
                # has left: it sends each one from a task of its own, so a set_subscribed(True)
                # right now could reach the server first, and the server, seeing "subscribe"
                # (already subscribed) then "unsubscribe", rightly leaves the track off.
                # Re-subscribe only once the server has acted on the unsubscription.
                await forwarding_stopped(track)
        finally:
            player.cancel()
