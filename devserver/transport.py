"""One participant's WebRTC side: aiortc peer connections, negotiation, slots, data channels.

Two shapes, matching the SDK's two signalling modes:

- ``SinglePcTransport`` (``/rtc/v1``, :mod:`devserver.single_pc`): one peer connection. The
  client always offers and the server answers. To send media the server needs ``recvonly``
  m-lines in the client's offer: the SDK offers three audio ones up front; when more are needed,
  or when the server wants a fresh offer to attach or detach a track, it sends
  ``MediaSectionsRequirement`` and the SDK re-offers. The answer maps m-line ids to track sids
  (``mid_to_track_id``).
- ``DualPcTransport`` (``/rtc``, :mod:`devserver.dual_pc`): the client's publisher connection
  (client offers) and a subscriber connection on which the server offers, with the server's
  data channels.

This module holds what both share (the base class, slots, data channels, the publisher side);
:mod:`devserver.sdp` what they read from and write into descriptions.

A *slot* is one outbound audio transceiver with a permanent :class:`DownTrack`; subscribing
attaches a publisher's :class:`AudioFanout` to a free slot. A released slot is reused only
after the negotiation that turned it off has completed (the client never sees one m-line
switch tracks inside a single description), never for a track it carried before (the SDK
would not report that track again), and an idle slot shows no track's msid (duplicate msid
lines make the SDK reject the description and abort).
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCDataChannel,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpTransceiver,
)
from aiortc.sdp import SessionDescription, candidate_from_sdp
from livekit.protocol import models, rtc

from . import ids
from .media import AudioFanout, DownTrack
from .sdp import negotiated_mime_type, opus_payload_type

logger = logging.getLogger("devserver")

RELIABLE_LABEL = "_reliable"
LOSSY_LABEL = "_lossy"
RELIABLE = models.DataPacket.RELIABLE
LOSSY = models.DataPacket.LOSSY
# data queued per channel while it is not open yet, and the send buffer a client may fall behind
_PENDING_DATA_MESSAGES = 256
_MAX_BUFFERED_BYTES: dict[int, int] = {RELIABLE: 8 * 1024 * 1024, LOSSY: 256 * 1024}
ANSWER_TIMEOUT_S = 15.0
_CLOSE_WAIT_S = 5.0
OFFER_REQUEST_RETRY_S = 5.0


@dataclass(frozen=True, slots=True)
class InboundMedia:
    """A media section the client sends on: a track it publishes (audio or video)."""

    mid: str
    track_id: str  # the msid track id, which is the AddTrackRequest's cid
    kind: str
    payload_type: int | None  # the negotiated Opus payload type, None for other media
    receiver: RTCRtpReceiver
    mime_type: str = ""  # the codec the answer selects (the client sends with it), e.g. audio/opus


@dataclass(frozen=True, slots=True)
class PublisherMedia:
    started: tuple[InboundMedia, ...]
    stopped: tuple[str, ...]  # mids that no longer send


@dataclass(frozen=True, slots=True)
class ForwardSource:
    """A published track a subscriber should receive."""

    participant_sid: str
    track_sid: str
    fanout: AudioFanout


class TransportEvents(Protocol):
    """What a transport reports to its participant. All calls are synchronous."""

    def send_signal(self, response: rtc.SignalResponse) -> None: ...
    def on_publisher_media(self, media: PublisherMedia) -> None: ...
    def on_data(self, kind: int, payload: bytes) -> None: ...
    def on_connected(self) -> None: ...
    def on_failed(self) -> None: ...
    def on_forwarding(self, track_sid: str) -> None: ...
    def publisher_dtx(self, mid: str) -> bool | None:
        """Whether the track published on ``mid`` uses DTX; None if no audio is published there."""
        ...


def new_peer_connection() -> RTCPeerConnection:
    # no ICE servers: aiortc would otherwise add a public STUN server and contact it
    return RTCPeerConnection(
        RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
    )


@dataclass(eq=False, slots=True)
class _Slot:
    transceiver: RTCRtpTransceiver
    track: DownTrack
    source: ForwardSource | None = None
    released_generation: int = -1  # generation of the negotiation that may still show the old track
    reported: bool = False  # the participant was told this slot forwards its source
    carried: set[str] = field(default_factory=set)  # track sids this slot has forwarded

    @property
    def mid(self) -> str | None:
        return self.transceiver.mid


class _DataChannels:
    """The channels a participant's data leaves on, with a bounded queue until they open."""

    def __init__(self) -> None:
        self._channels: dict[int, RTCDataChannel] = {}
        self._pending: dict[int, collections.deque[bytes]] = {
            int(kind): collections.deque(maxlen=_PENDING_DATA_MESSAGES)
            for kind in (RELIABLE, LOSSY)
        }
        self.dropped_messages = 0

    def use(self, kind: int, channel: RTCDataChannel) -> None:
        self._channels[kind] = channel
        if channel.readyState == "open":
            self._flush(kind)
        else:
            channel.on("open", lambda: self._flush(kind))

    def send(self, kind: int, payload: bytes) -> None:
        channel = self._channels.get(kind)
        if channel is None or channel.readyState != "open":
            pending = self._pending[kind]
            if len(pending) == pending.maxlen:
                self.dropped_messages += 1
            pending.append(payload)
            return
        if channel.bufferedAmount > _MAX_BUFFERED_BYTES[kind]:
            self.dropped_messages += 1  # the client is not reading; do not grow without bound
            return
        channel.send(payload)

    def _flush(self, kind: int) -> None:
        channel = self._channels.get(kind)
        pending = self._pending[kind]
        while channel is not None and channel.readyState == "open" and pending:
            channel.send(pending.popleft())


def listen_for_data(channel: RTCDataChannel, on_data: Callable[[int, bytes], None]) -> int | None:
    kind = {RELIABLE_LABEL: RELIABLE, LOSSY_LABEL: LOSSY}.get(channel.label)
    if kind is None:
        return None  # e.g. the data-track channel: not supported here

    def on_message(message: bytes | str) -> None:
        if isinstance(message, bytes):
            on_data(kind, message)

    channel.on("message", on_message)
    return kind


class PublisherSide:
    """A peer connection on which the client offers: it learns what the client publishes."""

    def __init__(self, pc: RTCPeerConnection) -> None:
        self.pc = pc
        self.inbound_mids: set[str] = set()  # mids that carry the client's published media
        self.offer_mids: set[str] = set()  # mids that were ever sending: never reused as slots
        self._early_candidates: list[str] = []

    def read_offer_media(self, offer: SessionDescription) -> PublisherMedia:
        """Compare an applied offer with the previous one: which media started or stopped."""
        transceivers = {t.mid: t for t in self.pc.getTransceivers()}
        started: list[InboundMedia] = []
        sending: set[str] = set()
        for media in offer.media:
            mid = media.rtp.muxId
            if media.kind not in ("audio", "video") or mid is None:
                continue
            if media.port == 0 or media.direction not in ("sendonly", "sendrecv"):
                continue
            sending.add(mid)
            self.offer_mids.add(mid)
            if mid in self.inbound_mids or mid not in transceivers:
                continue
            msid = (media.msid or "").split()
            started.append(
                InboundMedia(
                    mid=mid,
                    track_id=msid[1] if len(msid) > 1 else (msid[0] if msid else ""),
                    kind=media.kind,
                    payload_type=opus_payload_type(media) if media.kind == "audio" else None,
                    receiver=transceivers[mid].receiver,
                    mime_type=negotiated_mime_type(media),
                )
            )
        stopped = tuple(sorted(self.inbound_mids - sending))
        self.inbound_mids = sending
        return PublisherMedia(started=tuple(started), stopped=stopped)

    async def add_candidate(self, candidate_init: str) -> None:
        if self.pc.remoteDescription is None:
            self._early_candidates.append(candidate_init)
            return
        await add_candidate(self.pc, candidate_init)

    async def flush_candidates(self) -> None:
        early, self._early_candidates = self._early_candidates, []
        for candidate_init in early:
            await add_candidate(self.pc, candidate_init)


async def add_candidate(pc: RTCPeerConnection, candidate_init: str) -> None:
    """Add a trickled candidate (LiveKit's JSON ``candidateInit``) to the bundle transport."""
    try:
        init = json.loads(candidate_init)
        text = str(init.get("candidate") or "")
    except (ValueError, AttributeError):
        logger.debug("ignoring malformed ICE candidate")
        return
    if not text:
        return  # end of candidates
    text = text.removeprefix("candidate:")
    try:
        candidate = candidate_from_sdp(text)
    except (ValueError, IndexError):
        logger.debug("ignoring unparsable ICE candidate")
        return
    if candidate.protocol.lower() != "udp" or candidate.ip.endswith(".local"):
        return  # aioice speaks UDP only; mDNS names would need multicast lookups
    remote = pc.remoteDescription
    first = SessionDescription.parse(remote.sdp).media[0] if remote is not None else None
    # with max-bundle every m-line shares the first one's transport
    candidate.sdpMid = first.rtp.muxId if first is not None else "0"
    candidate.sdpMLineIndex = 0
    await pc.addIceCandidate(candidate)


class RtcTransport:
    """Shared slot bookkeeping; subclasses own the peer connections and the negotiation."""

    def __init__(self, events: TransportEvents, *, forward_queue_packets: int) -> None:
        self._events = events
        self._forward_queue_packets = forward_queue_packets
        self._wanted: dict[str, ForwardSource] = {}
        self._paused: set[str] = set()
        self._slots: list[_Slot] = []
        self._generation = 0  # completed negotiations of the sending connection
        self._dirty = False  # subscriptions changed since the last description was made
        self._lock = asyncio.Lock()
        self._connected = False
        self._closed = False
        self._data = _DataChannels()
        # peer connection work runs in tasks of its own: aiortc's ICE gathering leaks sockets
        # when cancelled halfway, so a cancelled caller must not cancel the work itself
        self._operations: set[asyncio.Task[None]] = set()

    # -- signalling (subclasses) ------------------------------------------------------------

    def start(self, name: str) -> None:
        """Called once the client has its JoinResponse."""

    async def handle_offer(self, sdp: str, offer_id: int = 0) -> None:
        """Answer the client's offer; the answer carries ``offer_id`` (the client's numbering)."""
        raise NotImplementedError

    async def handle_answer(self, sdp: str, answer_id: int = 0) -> None:
        """The client's answer to a server offer; ``answer_id`` names the offer it answers."""
        raise NotImplementedError

    async def add_ice_candidate(self, target: int, candidate_init: str) -> None:
        raise NotImplementedError

    # -- the participant's requests ---------------------------------------------------------

    def subscribe(self, source: ForwardSource) -> None:
        if self._closed or source.track_sid in self._wanted:
            return
        self._wanted[source.track_sid] = source
        self._changed()

    def unsubscribe(self, track_sid: str) -> None:
        if self._wanted.pop(track_sid, None) is None:
            return
        self._paused.discard(track_sid)
        for slot in self._slots:
            if slot.source is not None and slot.source.track_sid == track_sid:
                self._release(slot)  # stop the audio now; the m-line goes inactive next time
        self._changed()

    def set_paused(self, track_sid: str, paused: bool) -> None:
        if paused:
            self._paused.add(track_sid)
        else:
            self._paused.discard(track_sid)
        for slot in self._slots:
            if slot.source is not None and slot.source.track_sid == track_sid:
                slot.track.set_paused(paused)

    def subscribed_track_sids(self) -> set[str]:
        return set(self._wanted)

    def send_data(self, kind: int, payload: bytes) -> None:
        if not self._closed:
            self._data.send(kind, payload)

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def subscriber_primary(self) -> bool:
        """Whether the client must wait for the server's subscriber offer (dual mode)."""
        return False

    async def close(self) -> None:
        """Stop forwarding, let running peer connection work finish, close the connections."""
        self._closed = True
        for slot in self._slots:
            if slot.source is not None:
                slot.source.fanout.remove_sink(slot.track)
            slot.track.stop()
        self._wanted.clear()
        self._stop_negotiating()
        if self._operations:
            await asyncio.wait(set(self._operations), timeout=_CLOSE_WAIT_S)
        for pc in self._peer_connections():
            await pc.close()

    # -- helpers for subclasses ---------------------------------------------------------------

    def _peer_connections(self) -> list[RTCPeerConnection]:
        raise NotImplementedError

    def _stop_negotiating(self) -> None:
        """Make a waiting negotiation return (it must not be cancelled, see ``_operations``)."""

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.create_task(work, name=name)
        self._operations.add(task)
        task.add_done_callback(self._operations.discard)
        return task

    async def _run(self, work: Coroutine[Any, Any, None], name: str) -> None:
        """Run ``work`` to its end even when the awaiting task is cancelled."""
        await asyncio.shield(self._spawn(work, name))

    def _changed(self) -> None:
        self._dirty = True

    def _release(self, slot: _Slot) -> None:
        if slot.source is not None:
            slot.source.fanout.remove_sink(slot.track)  # gives the track a fresh idle id
        slot.source = None
        slot.released_generation = self._generation
        slot.transceiver.direction = "inactive"
        # aiortc writes an a=msid line even for inactive m-lines; two equal ones make the SDK
        # reject the description (and abort), so an idle slot must not keep the track's msid
        slot.transceiver.sender.replaceTrack(slot.track)
        slot.transceiver.sender._stream_id = "-"

    def _free_slots(self) -> list[_Slot]:
        return [
            s for s in self._slots if s.source is None and s.released_generation < self._generation
        ]

    def _plan(self) -> tuple[list[tuple[_Slot, ForwardSource]], int]:
        """Which free slot each unattached wanted track would take, and how many find none."""
        attached = {s.source.track_sid for s in self._slots if s.source is not None}
        free = self._free_slots()
        placements: list[tuple[_Slot, ForwardSource]] = []
        unplaced = 0
        for sid, source in self._wanted.items():
            if sid in attached:
                continue
            # never put a track back on an m-line that carried it before: the SDK remembers
            # (m-line, stream) pairs it has reported and would not report the track again
            slot = next((s for s in free if sid not in s.carried), None)
            if slot is None:
                unplaced += 1
            else:
                free.remove(slot)
                placements.append((slot, source))
        return placements, unplaced

    def _apply_subscriptions(self) -> int:
        """Attach wanted tracks to free slots; returns how many found no slot."""
        self._dirty = False
        placements, unplaced = self._plan()
        for slot, source in placements:
            self._assign(slot, source)
        return unplaced

    def _assign(self, slot: _Slot, source: ForwardSource) -> None:
        slot.source = source
        slot.carried.add(source.track_sid)
        slot.reported = False
        slot.track.set_label(source.track_sid)
        sender = slot.transceiver.sender
        sender.replaceTrack(slot.track)  # same track object; refreshes the SDP track id
        # aiortc has no setter for the msid stream id; the SDK parses "PA_x|TR_y" from it
        sender._stream_id = ids.stream_id(source.participant_sid, source.track_sid)
        slot.transceiver.direction = "sendonly"
        source.fanout.add_sink(slot.track)
        slot.track.set_paused(source.track_sid in self._paused)

    def _mid_to_track_id(self) -> dict[str, str]:
        return {
            slot.mid: slot.source.track_sid
            for slot in self._slots
            if slot.source is not None and slot.mid is not None
        }

    def _new_slot(self, transceiver: RTCRtpTransceiver) -> _Slot:
        track = DownTrack(queue_packets=self._forward_queue_packets)
        transceiver.sender.replaceTrack(track)  # permanent: the sender never polls for a track
        slot = _Slot(transceiver=transceiver, track=track)
        self._slots.append(slot)
        return slot

    def _report_forwarding(self, slots: Iterable[_Slot]) -> None:
        for slot in slots:
            if slot.source is not None and not slot.reported:
                slot.reported = True
                self._events.on_forwarding(slot.source.track_sid)

    def _watch_connection(self, pc: RTCPeerConnection, *, primary: bool) -> None:
        @pc.on("connectionstatechange")
        def on_state_change() -> None:
            state = pc.connectionState
            if state == "connected" and primary and not self._connected:
                self._connected = True
                self._events.on_connected()
            elif state == "failed" and not self._closed:
                self._events.on_failed()
