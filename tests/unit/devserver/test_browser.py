"""What the browser SDK (livekit-client) needs beyond what the Python SDK exercises.

The server runs in-process on loopback and aiortc peer connections stand in for the browser's:
only descriptions are exchanged (media needs a non-loopback path, see tests/e2e/devserver).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiortc import AudioStreamTrack, RTCPeerConnection, RTCSessionDescription
from aiortc.sdp import MediaDescription, SessionDescription
from livekit.protocol import models, rtc

from devserver import DevServer, DevServerConfig
from devserver.sdp import negotiated_mime_type
from tests.unit.devserver.test_server import SECRET, Signal, join_request_param, token

ORIGIN = "http://localhost:5173"


@pytest.fixture
async def server() -> AsyncIterator[DevServer]:
    async with DevServer(DevServerConfig(port=0, api_secret=SECRET)) as running:
        yield running


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def connect(
    session: aiohttp.ClientSession, server: DevServer, jwt_token: str, path: str = "/rtc"
) -> Signal:
    ws = await session.ws_connect(
        f"{server.url}{path}", headers={"Authorization": f"Bearer {jwt_token}"}
    )
    return Signal(ws)


def offer_request(sdp: str, offer_id: int) -> rtc.SignalRequest:
    request = rtc.SignalRequest()
    request.offer.type = "offer"
    request.offer.sdp = sdp
    request.offer.id = offer_id
    return request


async def publisher_offer(pc: RTCPeerConnection) -> str:
    """An offer that sends one microphone track (Opus), as a browser's publisher makes."""
    pc.addTrack(AudioStreamTrack())
    await pc.setLocalDescription(await pc.createOffer())
    return pc.localDescription.sdp


async def add_track(signal: Signal, cid: str) -> models.TrackInfo:
    request = rtc.SignalRequest()
    request.add_track.cid = cid
    request.add_track.type = models.AUDIO
    request.add_track.source = models.TrackSource.MICROPHONE
    request.add_track.name = "microphone"
    await signal.send(request)
    published = (await signal.next("track_published")).track_published
    assert published.cid == cid
    return published.track


async def answer_subscriber_offer(
    signal: Signal, pc: RTCPeerConnection, offer: rtc.SessionDescription
) -> None:
    await pc.setRemoteDescription(RTCSessionDescription(sdp=offer.sdp, type="offer"))
    await pc.setLocalDescription(await pc.createAnswer())
    request = rtc.SignalRequest()
    request.answer.type = "answer"
    request.answer.sdp = pc.localDescription.sdp
    request.answer.id = offer.id  # what livekit-client does
    await signal.send(request)


# -- offer and answer ids -----------------------------------------------------------------------


async def test_two_pc_answers_echo_the_offer_id_and_server_offers_count_up(
    server: DevServer, session: aiohttp.ClientSession
) -> None:
    listener_pc, speaker_pc = RTCPeerConnection(), RTCPeerConnection()
    try:
        listener = await connect(session, server, token("listener", "ids2"))
        await listener.next("join")
        first = (await listener.next("offer")).offer
        assert first.id >= 1  # livekit-client treats 0 as "unnumbered"
        await answer_subscriber_offer(listener, listener_pc, first)

        speaker = await connect(session, server, token("speaker", "ids2"))
        await speaker.next("join")
        await add_track(speaker, "mic")
        sdp = await publisher_offer(speaker_pc)
        await speaker.send(offer_request(sdp, 7))
        answer = (await speaker.next("answer")).answer
        assert answer.id == 7  # the client settles its negotiation only on id >= its offer's

        # the speaker's track makes the server offer again to the listener, with a higher id
        second = (await listener.next("offer")).offer
        assert second.id > first.id
        assert list(second.mid_to_track_id.values()) != []
    finally:
        await listener_pc.close()
        await speaker_pc.close()


async def test_a_stale_subscriber_answer_is_ignored(
    server: DevServer, session: aiohttp.ClientSession
) -> None:
    pc = RTCPeerConnection()
    try:
        signal = await connect(session, server, token("alice", "stale"))
        await signal.next("join")
        offer = (await signal.next("offer")).offer
        stale = rtc.SessionDescription(type="offer", sdp=offer.sdp, id=offer.id + 100)
        await answer_subscriber_offer(signal, pc, stale)  # an answer naming another offer
        participant = server.rooms.get("stale").participants["alice"]  # type: ignore[union-attr]
        await asyncio.sleep(0.3)
        assert participant.transport._subscriber_pc.remoteDescription is None  # type: ignore[attr-defined]
    finally:
        await pc.close()


async def test_single_pc_answers_echo_the_offer_id(
    server: DevServer, session: aiohttp.ClientSession
) -> None:
    pc = RTCPeerConnection()
    pc.addTransceiver("audio", direction="recvonly")  # livekit-client's receive m-lines
    pc.createDataChannel("_reliable")
    try:
        await pc.setLocalDescription(await pc.createOffer())
        join = rtc.JoinRequest()
        join.client_info.sdk = models.ClientInfo.JS
        join.publisher_offer.type = "offer"
        join.publisher_offer.sdp = pc.localDescription.sdp
        join.publisher_offer.id = 1
        signal = await connect(
            session,
            server,
            token("alice", "ids1"),
            f"/rtc/v1?join_request={join_request_param(join)}",
        )
        await signal.next("join")
        answer = (await signal.next("answer")).answer
        assert answer.id == 1
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer.sdp, type="answer"))

        # a renegotiation (the client now publishes): its answer carries the new offer's id
        await add_track(signal, "mic")
        sdp = await publisher_offer(pc)
        await signal.send(offer_request(sdp, 2))
        assert (await signal.next("answer")).answer.id == 2
    finally:
        await pc.close()


# -- track mime types ---------------------------------------------------------------------------


async def test_audio_tracks_carry_their_mime_type(
    server: DevServer, session: aiohttp.ClientSession
) -> None:
    speaker_pc = RTCPeerConnection()
    try:
        listener = await connect(session, server, token("listener", "mime"))
        await listener.next("join")
        speaker = await connect(session, server, token("speaker", "mime"))
        await speaker.next("join")

        published = await add_track(speaker, "mic")
        assert published.mime_type == "audio/opus"  # in the TrackPublishedResponse
        assert [(c.mime_type, c.cid) for c in published.codecs] == [("audio/opus", "mic")]

        await speaker.send(offer_request(await publisher_offer(speaker_pc), 1))
        await speaker.next("answer")
        while True:  # the listener learns of the track, with its negotiated codec
            update = (await listener.next("update")).update
            tracks = [t for p in update.participants if p.identity == "speaker" for t in p.tracks]
            if tracks:
                break
        assert [(t.sid, t.mime_type) for t in tracks] == [(published.sid, "audio/opus")]
        assert tracks[0].codecs[0].mime_type == "audio/opus"
    finally:
        await speaker_pc.close()


def _offer_section(payload_types: str, rtpmaps: list[str]) -> MediaDescription:
    sdp = "\r\n".join(
        [
            "v=0",
            "o=- 1 1 IN IP4 0.0.0.0",
            "s=-",
            "t=0 0",
            f"m=audio 9 UDP/TLS/RTP/SAVPF {payload_types}",
            "c=IN IP4 0.0.0.0",
            "a=mid:0",
            "a=sendonly",
            *rtpmaps,
            "",
        ]
    )
    return SessionDescription.parse(sdp).media[0]


def test_the_mime_type_is_the_codec_the_answer_selects() -> None:
    # Chrome lists RED after Opus; aiortc does not negotiate RED, so the track is Opus either way
    red_first = _offer_section(
        "63 111 0", ["a=rtpmap:63 red/48000/2", "a=rtpmap:111 opus/48000/2", "a=rtpmap:0 PCMU/8000"]
    )
    assert negotiated_mime_type(red_first) == "audio/opus"
    pcmu_only = _offer_section("0", ["a=rtpmap:0 PCMU/8000"])
    assert negotiated_mime_type(pcmu_only) == "audio/PCMU"
    assert negotiated_mime_type(_offer_section("100", ["a=rtpmap:100 L16/48000/2"])) == ""


# -- HTTP endpoints a browser fetches ----------------------------------------------------------


@pytest.mark.parametrize("path", ["/rtc/validate", "/rtc/v1/validate", "/"])
async def test_browsers_may_read_the_http_endpoints(
    server: DevServer, session: aiohttp.ClientSession, path: str
) -> None:
    url = f"{server.http_url}{path}"
    async with session.get(url, headers={"Origin": ORIGIN}) as response:
        assert response.headers.get("Access-Control-Allow-Origin") == "*"
    async with session.head(url, headers={"Origin": ORIGIN}) as response:
        assert response.headers.get("Access-Control-Allow-Origin") == "*"
    preflight = {
        "Origin": ORIGIN,
        "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "authorization",
    }
    async with session.options(url, headers=preflight) as response:
        assert response.status == 204
        assert response.headers["Access-Control-Allow-Origin"] == "*"
        assert "GET" in response.headers["Access-Control-Allow-Methods"]
        allowed = response.headers["Access-Control-Allow-Headers"].lower()
        assert "authorization" in allowed.replace(" ", "").split(",")


async def test_a_refused_token_reason_is_readable_cross_origin(
    server: DevServer, session: aiohttp.ClientSession
) -> None:
    url = f"{server.http_url}/rtc/validate?access_token={token('a', 'r1')}&room=elsewhere"
    async with session.get(url, headers={"Origin": ORIGIN}) as response:
        assert response.status == 401
        assert response.headers.get("Access-Control-Allow-Origin") == "*"
        assert "room" in await response.text()


async def test_v1_validate_is_404_when_single_pc_is_off(
    session: aiohttp.ClientSession,
) -> None:
    config = DevServerConfig(port=0, api_secret=SECRET, single_peer_connection=False)
    jwt_token = token("a", "r")
    async with DevServer(config) as running:
        base = f"{running.http_url}/rtc"
        async with session.get(
            f"{base}/v1/validate?access_token={jwt_token}", headers={"Origin": ORIGIN}
        ) as response:
            assert response.status == 404  # livekit-client falls back to /rtc on a 404 only
            assert response.headers.get("Access-Control-Allow-Origin") == "*"
            assert "requested room does not exist" not in await response.text()
        async with session.get(f"{base}/validate?access_token={jwt_token}") as response:
            assert response.status == 200
