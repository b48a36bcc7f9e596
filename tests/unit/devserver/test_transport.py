"""Dual peer connection negotiation against an in-process aiortc client."""

from __future__ import annotations

import asyncio

from aiortc import RTCPeerConnection, RTCSessionDescription
from livekit.protocol import rtc

from devserver.dual_pc import DualPcTransport
from devserver.media import AudioFanout
from devserver.transport import ForwardSource, PublisherMedia


class Events:
    """Records each signal with the subscriber transport's DTLS state when it was sent."""

    def __init__(self) -> None:
        self.transport: DualPcTransport | None = None
        self.offers: asyncio.Queue[tuple[rtc.SessionDescription, list[str]]] = asyncio.Queue()

    def send_signal(self, response: rtc.SignalResponse) -> None:
        if response.WhichOneof("message") == "offer":
            assert self.transport is not None
            pc = self.transport._subscriber_pc
            states = [t.receiver.transport.state for t in pc.getTransceivers()]
            sctp = pc.sctp
            states.append(sctp.transport.state if sctp is not None else "none")
            self.offers.put_nowait((response.offer, states))

    def on_publisher_media(self, media: PublisherMedia) -> None: ...
    def on_data(self, kind: int, payload: bytes) -> None: ...
    def on_connected(self) -> None: ...
    def on_failed(self) -> None: ...
    def on_forwarding(self, track_sid: str) -> None: ...
    def publisher_dtx(self, mid: str) -> bool | None:
        return None


async def answer(
    transport: DualPcTransport, client: RTCPeerConnection, offer: rtc.SessionDescription
) -> None:
    await client.setRemoteDescription(RTCSessionDescription(sdp=offer.sdp, type="offer"))
    await client.setLocalDescription(await client.createAnswer())
    await transport.handle_answer(client.localDescription.sdp, offer.id)


async def test_tracks_are_offered_only_once_the_subscriber_transport_is_up() -> None:
    """aiortc starts a sender only for an answer applied while DTLS is connected: an answer
    applied during the handshake (the data-only first offer's) leaves its track silent."""
    events = Events()
    transport = DualPcTransport(events, forward_queue_packets=50)
    events.transport = transport
    client = RTCPeerConnection()
    try:
        transport.start("late")
        first, _ = await asyncio.wait_for(events.offers.get(), 10)
        # a late joiner: existing tracks are subscribed while the first negotiation runs
        transport.subscribe(ForwardSource("PA_a", "TR_a", AudioFanout(111)))
        await answer(transport, client, first)
        media_offer, states = await asyncio.wait_for(events.offers.get(), 10)
        assert states and all(state == "connected" for state in states), states
        await answer(transport, client, media_offer)
        await asyncio.sleep(0.2)
        [slot] = transport._slots
        assert slot.transceiver.currentDirection == "sendonly"
        assert slot.transceiver.sender._RTCRtpSender__started  # type: ignore[attr-defined]
    finally:
        await transport.close()
        await client.close()
