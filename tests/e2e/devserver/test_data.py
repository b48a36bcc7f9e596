"""Data through the dev server: packets, text and byte streams, legacy transcriptions.

Includes LiveKit's identity rules: a text stream's foreign ``sender_identity`` survives only
when an agent sends it, and ``Transcription`` packets are forwarded only from agents.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest
from livekit import rtc

from devserver.launcher import DevServerProcess

from .helpers import EVENT_TIMEOUT_S, connected, publish_audio, room_name, token

pytestmark = pytest.mark.e2e

EVENTS = ["data_received", "transcription_received", "participant_connected"]
CAPTION_ATTRIBUTES = {
    "lk.segment_id": "SG_1",
    "lk.transcribed_track_id": "TR_x",
    "lk.transcription_final": "true",
}


@dataclass(frozen=True, slots=True)
class Received:
    identity: str
    info: Any
    content: str | bytes


class StreamInbox:
    """Reads every incoming text/byte stream of one topic to its end."""

    def __init__(self, room: rtc.Room, topic: str, *, binary: bool = False) -> None:
        self._items: asyncio.Queue[Received] = asyncio.Queue()
        self._tasks: set[asyncio.Task[None]] = set()
        if binary:
            room.register_byte_stream_handler(topic, self._on_stream)
        else:
            room.register_text_stream_handler(topic, self._on_stream)

    def _on_stream(self, reader: Any, identity: str) -> None:
        task = asyncio.create_task(self._read(reader, identity))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _read(self, reader: Any, identity: str) -> None:
        if isinstance(reader, rtc.TextStreamReader):
            content: str | bytes = await reader.read_all()
        else:
            content = b"".join([chunk async for chunk in reader])
        await self._items.put(Received(identity=identity, info=reader.info, content=content))

    async def next(self) -> Received:
        return await asyncio.wait_for(self._items.get(), EVENT_TIMEOUT_S)

    def empty(self) -> bool:
        return self._items.empty()


async def test_packets_with_topics_kinds_and_destinations(devserver: DevServerProcess) -> None:
    room = room_name("data")
    url = devserver.url
    async with (
        connected(url, token("bob", room), events=EVENTS) as (_, bob),
        connected(url, token("carol", room), events=EVENTS) as (_, carol),
        connected(url, token("alice", room)) as (alice, _),
    ):
        await alice.local_participant.publish_data(b"to all", topic="chat")
        for events in (bob, carol):
            (packet,) = await events.wait("data_received")
            assert packet.data == b"to all" and packet.topic == "chat"
            assert packet.participant.identity == "alice"
            assert packet.kind == rtc.DataPacketKind.KIND_RELIABLE

        await alice.local_participant.publish_data(b"fast", reliable=False, topic="lossy")
        for events in (bob, carol):
            (packet,) = await events.wait("data_received")
            assert packet.data == b"fast" and packet.topic == "lossy"
            assert packet.kind == rtc.DataPacketKind.KIND_LOSSY

        await alice.local_participant.publish_data(b"bob only", destination_identities=["bob"])
        await alice.local_participant.publish_data(b"after")
        assert (await bob.wait("data_received"))[0].data == b"bob only"
        # same sender, same ordered channel: "after" arriving proves "bob only" was not sent
        assert (await carol.wait("data_received"))[0].data == b"after"
        assert not carol.seen("data_received", lambda p: p.data == b"bob only")


async def test_text_and_byte_streams(devserver: DevServerProcess) -> None:
    room = room_name("streams")
    url = devserver.url
    async with (
        connected(url, token("listener", room)) as (listener, _),
        connected(url, token("alice", room)) as (alice, _),
    ):
        captions = StreamInbox(listener, "lk.transcription")
        files = StreamInbox(listener, "files", binary=True)

        await alice.local_participant.send_text(
            "hello world", topic="lk.transcription", attributes=CAPTION_ATTRIBUTES
        )
        caption = await captions.next()
        assert caption.content == "hello world"
        assert caption.identity == "alice"
        assert caption.info.attributes == CAPTION_ATTRIBUTES

        long_text = "".join(f"word{i} " for i in range(8000))  # several chunks
        writer = await alice.local_participant.stream_text(topic="lk.transcription")
        for start in range(0, len(long_text), 5000):
            await writer.write(long_text[start : start + 5000])
        await writer.aclose()
        assert (await captions.next()).content == long_text

        payload = bytes(range(256)) * 300
        await alice.local_participant.send_bytes(payload, name="blob.bin", topic="files")
        received = await files.next()
        assert received.content == payload and received.identity == "alice"


async def test_agent_may_caption_on_behalf_of_a_participant(devserver: DevServerProcess) -> None:
    room = room_name("agent")
    url = devserver.url
    async with (
        connected(url, token("listener", room), events=EVENTS) as (listener, listener_events),
        connected(url, token("alice", room)) as (alice, _),
        connected(url, token("transcriber", room, kind="agent", hidden=True)) as (bot, _),
        connected(url, token("mallory", room)) as (mallory, _),
    ):
        captions = StreamInbox(listener, "lk.transcription")
        writer = await bot.local_participant.stream_text(
            topic="lk.transcription", attributes=CAPTION_ATTRIBUTES, sender_identity="alice"
        )
        await writer.write("said by alice")
        await writer.aclose()
        caption = await captions.next()
        assert (caption.identity, caption.content) == ("alice", "said by alice")
        assert caption.info.attributes == CAPTION_ATTRIBUTES

        # a non-agent cannot: the server puts its own identity back
        writer = await mallory.local_participant.stream_text(
            topic="lk.transcription", sender_identity="alice"
        )
        await writer.write("forged")
        await writer.aclose()
        forged = await captions.next()
        assert (forged.identity, forged.content) == ("mallory", "forged")

        # the hidden agent's JSON packets arrive without an identity (it is not in the room)
        await bot.local_participant.publish_data(b'{"type": "transcript"}', topic="captions")
        (packet,) = await listener_events.wait("data_received")
        assert packet.data == b'{"type": "transcript"}' and packet.participant is None
        assert "transcriber" not in listener.remote_participants
        assert "transcriber" not in alice.remote_participants


async def test_transcription_packets_are_forwarded_only_from_agents(
    devserver: DevServerProcess,
) -> None:
    room = room_name("legacy")
    url = devserver.url
    async with (
        connected(url, token("listener", room), events=EVENTS) as (_, listener_events),
        connected(url, token("alice", room)) as (alice, _),
        connected(url, token("transcriber", room, kind="agent", hidden=True)) as (bot, _),
        connected(url, token("mallory", room)) as (mallory, _),
    ):
        _, _, publication = await publish_audio(alice)
        segment = rtc.TranscriptionSegment(
            id="SG_1", text="hello", start_time=0, end_time=500, language="en", final=True
        )
        await bot.local_participant.publish_transcription(
            rtc.Transcription(
                participant_identity="alice", track_sid=publication.sid, segments=[segment]
            )
        )
        segments, participant, _ = await listener_events.wait("transcription_received")
        assert [s.text for s in segments] == ["hello"] and segments[0].final
        assert participant is not None and participant.identity == "alice"

        await mallory.local_participant.publish_transcription(
            rtc.Transcription(
                participant_identity="alice", track_sid=publication.sid, segments=[segment]
            )
        )
        await mallory.local_participant.publish_data(b"sync")
        # the same ordered channel: once "sync" is here a forwarded transcription would be too
        await listener_events.wait("data_received", lambda p: p.data == b"sync")
        assert listener_events.unreturned("transcription_received") == 0
