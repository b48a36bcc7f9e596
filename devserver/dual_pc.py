"""``/rtc``: the client's publisher connection (the client offers) and a subscriber connection
on which the server offers, with the server's data channels (see :mod:`devserver.transport`)."""

from __future__ import annotations

import asyncio
import logging

from aiortc import RTCDataChannel, RTCPeerConnection, RTCSessionDescription
from aiortc.sdp import SessionDescription
from livekit.protocol import rtc

from .sdp import opus_preferences, with_publisher_opus_parameters
from .transport import (
    ANSWER_TIMEOUT_S,
    LOSSY,
    LOSSY_LABEL,
    RELIABLE,
    RELIABLE_LABEL,
    PublisherSide,
    RtcTransport,
    TransportEvents,
    add_candidate,
    listen_for_data,
    new_peer_connection,
)

logger = logging.getLogger("devserver")


class DualPcTransport(RtcTransport):
    """``/rtc``: a publisher connection (client offers) and a subscriber one (server offers)."""

    def __init__(self, events: TransportEvents, *, forward_queue_packets: int) -> None:
        super().__init__(events, forward_queue_packets=forward_queue_packets)
        self._publisher_pc = new_peer_connection()
        self._subscriber_pc = new_peer_connection()
        self._publisher = PublisherSide(self._publisher_pc)
        self._subscriber_candidates: list[str] = []
        self._answer: asyncio.Future[str] | None = None
        # like LiveKit, the server numbers its subscriber offers; the client's answer echoes it
        self._offer_id = 0
        self._wake = asyncio.Event()
        # set once the subscriber connection's (bundled) DTLS transport is up, or never will be
        self._subscriber_settled = asyncio.Event()
        self._watch_connection(self._subscriber_pc, primary=True)

        @self._subscriber_pc.on("connectionstatechange")
        def on_subscriber_state() -> None:
            if self._subscriber_pc.connectionState in ("connected", "failed", "closed"):
                self._subscriber_settled.set()

        self._watch_connection(self._publisher_pc, primary=False)

        @self._publisher_pc.on("datachannel")
        def on_datachannel(channel: RTCDataChannel) -> None:
            listen_for_data(channel, self._events.on_data)

        reliable = self._subscriber_pc.createDataChannel(RELIABLE_LABEL, ordered=True)
        lossy = self._subscriber_pc.createDataChannel(LOSSY_LABEL, ordered=False, maxRetransmits=0)
        self._data.use(RELIABLE, reliable)
        self._data.use(LOSSY, lossy)

    @property
    def subscriber_primary(self) -> bool:
        return True

    def start(self, name: str) -> None:
        """Begin negotiating the subscriber connection (its first offer goes out now)."""
        self._dirty = True
        self._spawn(self._negotiate(), name=f"negotiate:{name}")
        self._wake.set()

    async def handle_offer(self, sdp: str, offer_id: int = 0) -> None:
        """The client's publisher offer."""
        await self._run(self._answer_offer(sdp, offer_id), "answer")

    async def _answer_offer(self, sdp: str, offer_id: int) -> None:
        if self._closed:
            return
        offer = SessionDescription.parse(sdp)
        pc = self._publisher_pc
        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        self._events.on_publisher_media(self._publisher.read_offer_media(offer))
        answer = await pc.createAnswer()
        await pc.setLocalDescription(answer)
        response = rtc.SignalResponse()
        response.answer.type = "answer"
        response.answer.id = offer_id  # the client settles a negotiation by this id
        response.answer.sdp = with_publisher_opus_parameters(
            pc.localDescription.sdp, self._events.publisher_dtx
        )
        self._events.send_signal(response)
        await self._publisher.flush_candidates()

    async def handle_answer(self, sdp: str, answer_id: int = 0) -> None:
        """The client's answer to the subscriber offer (``answer_id`` 0: an unnumbered one)."""
        if answer_id and answer_id != self._offer_id:
            logger.debug(
                "ignoring an answer to an earlier offer",
                extra={"answer_id": answer_id, "offer_id": self._offer_id},
            )
        elif self._answer is not None and not self._answer.done():
            self._answer.set_result(sdp)
        else:
            logger.debug("ignoring an answer that no offer waits for")

    async def add_ice_candidate(self, target: int, candidate_init: str) -> None:
        if target == rtc.PUBLISHER:
            await self._publisher.add_candidate(candidate_init)
        elif self._subscriber_pc.remoteDescription is None:
            self._subscriber_candidates.append(candidate_init)
        else:
            await add_candidate(self._subscriber_pc, candidate_init)

    def _peer_connections(self) -> list[RTCPeerConnection]:
        return [self._subscriber_pc, self._publisher_pc]

    def _stop_negotiating(self) -> None:
        self._wake.set()
        self._subscriber_settled.set()
        if self._answer is not None and not self._answer.done():
            self._answer.set_result("")  # an empty answer: the negotiation ends unapplied

    def _changed(self) -> None:
        super()._changed()
        self._wake.set()

    async def _negotiate(self) -> None:
        """Send subscriber offers whenever subscriptions changed, one at a time."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._closed:
                return
            if not self._dirty:
                continue
            try:
                await self._offer_once()
            except Exception:
                logger.exception("subscriber negotiation failed")

    async def _offer_once(self) -> None:
        if self._generation > 0:
            # aiortc starts a transceiver's sender only when a remote description is applied
            # while the DTLS transport is already connected (``__connect`` skips senders while
            # it is still connecting, and nothing starts them later). The first offer carries
            # the data channels only, so media waits until its transport is up: an answer
            # applied during the handshake would leave its tracks silent for good.
            await self._subscriber_settled.wait()
        async with self._lock:
            pc = self._subscriber_pc
            # The first offer carries the data channels only. aiortc bundles on the transport
            # of whatever it created first (here the data channel's) but, when the answer names
            # an audio m-line placed before it as the bundle's first, it stops that shared
            # transport. Media sections added later come after the data section.
            missing = 0 if self._generation == 0 else self._apply_subscriptions()
            for _ in range(missing):
                transceiver = pc.addTransceiver("audio", direction="inactive")
                transceiver.setCodecPreferences(opus_preferences())
                self._new_slot(transceiver)
            if missing:
                self._apply_subscriptions()
            offer = await pc.createOffer()
            await pc.setLocalDescription(offer)
            if self._closed:
                return
            self._answer = asyncio.get_running_loop().create_future()
            self._offer_id += 1
            response = rtc.SignalResponse()
            response.offer.type = "offer"
            response.offer.id = self._offer_id
            response.offer.sdp = pc.localDescription.sdp
            response.offer.mid_to_track_id.update(self._mid_to_track_id())
            self._events.send_signal(response)
            try:
                sdp = await asyncio.wait_for(self._answer, ANSWER_TIMEOUT_S)
            except TimeoutError:
                logger.warning("client did not answer the subscriber offer")
                return
            if self._closed or not sdp:
                return
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
            early, self._subscriber_candidates = self._subscriber_candidates, []
            for candidate_init in early:
                await add_candidate(pc, candidate_init)
            if self._generation == 0:
                self._dirty = bool(self._wanted)  # the first offer left every track for later
            self._generation += 1
            self._report_forwarding(self._slots)
            if self._dirty:
                self._wake.set()
