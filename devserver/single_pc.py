"""``/rtc/v1``: one peer connection; the client always offers and the server answers (the
negotiation rules are in :mod:`devserver.transport`'s docstring)."""

from __future__ import annotations

import logging
import time

from aiortc import RTCDataChannel, RTCPeerConnection, RTCSessionDescription
from aiortc.sdp import SessionDescription
from livekit.protocol import rtc

from .sdp import with_publisher_opus_parameters
from .transport import (
    OFFER_REQUEST_RETRY_S,
    PublisherSide,
    RtcTransport,
    TransportEvents,
    listen_for_data,
    new_peer_connection,
)

logger = logging.getLogger("devserver")


class SinglePcTransport(RtcTransport):
    """``/rtc/v1``: one peer connection; the client offers, the server answers."""

    def __init__(self, events: TransportEvents, *, forward_queue_packets: int) -> None:
        super().__init__(events, forward_queue_packets=forward_queue_packets)
        self._pc = new_peer_connection()
        self._publisher = PublisherSide(self._pc)
        self._offer_requested_at: float | None = None
        self._watch_connection(self._pc, primary=True)

        @self._pc.on("datachannel")
        def on_datachannel(channel: RTCDataChannel) -> None:
            kind = listen_for_data(channel, self._events.on_data)
            if kind is not None:
                # in single-PC mode the client's own channels carry data both ways
                self._data.use(kind, channel)

    async def handle_offer(self, sdp: str, offer_id: int = 0) -> None:
        await self._run(self._answer_offer(sdp, offer_id), "answer")

    async def _answer_offer(self, sdp: str, offer_id: int) -> None:
        async with self._lock:
            if self._closed:
                return
            offer = SessionDescription.parse(sdp)
            await self._pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
            self._events.on_publisher_media(self._publisher.read_offer_media(offer))
            self._add_offered_slots(offer)
            missing = self._apply_subscriptions()
            answer = await self._pc.createAnswer()
            await self._pc.setLocalDescription(answer)
            self._generation += 1
            self._offer_requested_at = None
            response = rtc.SignalResponse()
            response.answer.type = "answer"
            response.answer.id = offer_id  # the client settles a negotiation by this id
            response.answer.sdp = with_publisher_opus_parameters(
                self._pc.localDescription.sdp, self._events.publisher_dtx
            )
            response.answer.mid_to_track_id.update(self._mid_to_track_id())
            self._events.send_signal(response)
            self._report_forwarding(self._slots)
            await self._publisher.flush_candidates()
            if missing or self._dirty:
                self._request_offer()

    async def handle_answer(self, sdp: str, answer_id: int = 0) -> None:
        logger.debug("ignoring an answer in single peer connection mode")

    async def add_ice_candidate(self, target: int, candidate_init: str) -> None:
        await self._publisher.add_candidate(candidate_init)

    def _peer_connections(self) -> list[RTCPeerConnection]:
        return [self._pc]

    def _changed(self) -> None:
        super()._changed()
        if self._pc.remoteDescription is not None and not self._lock.locked():
            self._request_offer()
        # during a negotiation the flag makes handle_offer ask for the next offer

    def _request_offer(self) -> None:
        """Ask the client for a new offer, with extra audio m-lines if slots are short."""
        now_s = time.monotonic()
        if self._closed or (
            self._offer_requested_at is not None
            and now_s - self._offer_requested_at < OFFER_REQUEST_RETRY_S
        ):
            return  # the offer already asked for will pick the change up
        _, needed = self._plan()
        self._offer_requested_at = now_s
        response = rtc.SignalResponse()
        response.media_sections_requirement.num_audios = needed
        self._events.send_signal(response)

    def _add_offered_slots(self, offer: SessionDescription) -> None:
        known = {id(s.transceiver) for s in self._slots}
        transceivers = {t.mid: t for t in self._pc.getTransceivers()}
        for media in offer.media:
            mid = media.rtp.muxId
            transceiver = transceivers.get(mid)
            if (
                media.kind == "audio"
                and media.port != 0
                and media.direction in ("recvonly", "inactive")
                and mid not in self._publisher.offer_mids
                and transceiver is not None
                and id(transceiver) not in known
            ):
                slot = self._new_slot(transceiver)
                slot.transceiver.direction = "inactive"
