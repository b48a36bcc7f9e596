"""Audio forwarding without decoding: Opus packets go from a publisher to each subscriber as is.

aiortc decodes every received track and re-encodes every sent one; doing that per stream costs
far more CPU than this server can spend. Instead:

- :class:`AudioFanout` takes the place of a publisher receiver's RTP handler (the one hook into
  aiortc's internals, see :meth:`AudioFanout.install`) and hands each Opus payload to the
  subscribers' down tracks;
- :class:`DownTrack` is the track a subscriber's RTP sender pulls from. It yields encoded
  ``av.Packet`` objects, which aiortc's sender packetizes without encoding (the documented
  path for pre-encoded media). Its timestamps follow the publisher's RTP timestamps, so gaps
  (DTX, mute) survive, and stay continuous when the down track is re-attached to another source.
"""

from __future__ import annotations

import asyncio
import fractions
import logging
import time
import uuid
from typing import Any

import av
from aiortc import MediaStreamTrack, RTCRtpReceiver
from aiortc.mediastreams import MediaStreamError
from aiortc.rtp import RtpPacket

logger = logging.getLogger("devserver")

OPUS_CLOCK_RATE_HZ = 48_000
_TIME_BASE = fractions.Fraction(1, OPUS_CLOCK_RATE_HZ)
_FRAME_SAMPLES = 960  # 20 ms, what libwebrtc sends
# packets kept for a sender that has not started pulling yet (ICE/DTLS still connecting):
# more would reach the subscriber as a burst of stale audio
_PACKETS_BEFORE_START = 5


class DownTrack(MediaStreamTrack):
    """The outbound audio of one subscriber slot: a bounded queue of encoded Opus packets."""

    kind = "audio"

    def __init__(self, *, queue_packets: int) -> None:
        super().__init__()
        self._queue: asyncio.Queue[av.Packet[Any] | None] = asyncio.Queue(queue_packets)
        self._source: object | None = None
        self._paused = False
        self._last_rtp_ts: int | None = None
        self._last_pts = -_FRAME_SAMPLES
        self._last_push_s = 0.0
        self._started = False
        self.forwarded_packets = 0
        self.dropped_packets = 0

    def set_label(self, label: str) -> None:
        """The track id the subscriber's SDP shows for this slot (a LiveKit track sid)."""
        self._id = label

    def attach(self, source: object) -> None:
        """Start taking packets from ``source``; timestamps continue where the last one ended."""
        self._source = source
        self._last_rtp_ts = None
        self._paused = False

    def detach(self) -> None:
        self._source = None
        self._set_idle_label()

    def set_paused(self, paused: bool) -> None:
        self._paused = paused

    @property
    def source(self) -> object | None:
        return self._source

    def push(self, source: object, rtp_timestamp: int, payload: bytes) -> None:
        """Queue one encoded frame from ``source``; frames from a former source are ignored."""
        if source is not self._source or self._paused or self.readyState != "live":
            return
        now_s = time.monotonic()
        if self._last_rtp_ts is None:
            # first frame of a source: continue after the last frame, leaving the real gap
            gap = max(_FRAME_SAMPLES, int((now_s - self._last_push_s) * OPUS_CLOCK_RATE_HZ))
            pts = self._last_pts + (gap if self._last_push_s else _FRAME_SAMPLES)
        else:
            delta = (rtp_timestamp - self._last_rtp_ts) & 0xFFFFFFFF
            if delta >= 0x80000000:  # reordered or repeated frame: a step back in time
                delta -= 0x100000000
            pts = self._last_pts + delta
        self._last_rtp_ts = rtp_timestamp
        self._last_pts = pts
        self._last_push_s = now_s

        packet: av.Packet[Any] = av.Packet(payload)
        packet.pts = pts
        packet.time_base = _TIME_BASE
        if self._queue.full() or (
            not self._started and self._queue.qsize() >= _PACKETS_BEFORE_START
        ):
            # a stuck subscriber loses its oldest audio, never grows memory
            self._queue.get_nowait()
            self.dropped_packets += 1
        self._queue.put_nowait(packet)
        self.forwarded_packets += 1

    async def recv(self) -> Any:  # av.Packet; aiortc's signature says Frame | Packet
        if self.readyState != "live":
            raise MediaStreamError
        self._started = True
        packet = await self._queue.get()
        if packet is None:
            raise MediaStreamError
        return packet

    def stop(self) -> None:
        if self.readyState == "live":
            super().stop()
            # wake a sender blocked in recv(); the queue may be full of stale audio
            while not self._queue.empty():
                self._queue.get_nowait()
            self._queue.put_nowait(None)

    def _set_idle_label(self) -> None:
        self._id = str(uuid.uuid4())


def discard_rtp(receiver: RTCRtpReceiver) -> None:
    """Drop what ``receiver`` gets instead of decoding it (media this server does not forward)."""

    async def discard(packet: RtpPacket, arrival_time_ms: int) -> None:
        return None

    receiver._handle_rtp_packet = discard  # type: ignore[method-assign]  # see AudioFanout.install


class AudioFanout:
    """Receives a published track's RTP packets and passes their Opus payloads on."""

    def __init__(self, payload_type: int) -> None:
        self._payload_type = payload_type
        self._sinks: set[DownTrack] = set()
        self.received_packets = 0
        self.audio_level_dbov: int | None = None

    def add_sink(self, sink: DownTrack) -> None:
        sink.attach(self)
        self._sinks.add(sink)

    def remove_sink(self, sink: DownTrack) -> None:
        self._sinks.discard(sink)
        if sink.source is self:
            sink.detach()

    def clear(self) -> None:
        for sink in tuple(self._sinks):
            self.remove_sink(sink)

    @property
    def sink_count(self) -> int:
        return len(self._sinks)

    def install(self, receiver: RTCRtpReceiver) -> None:
        """Make ``receiver`` hand its RTP packets to this fanout instead of its decoder.

        aiortc offers no public hook for encoded media on the receiving side; its DTLS
        transport calls ``receiver._handle_rtp_packet(packet, arrival_time_ms=...)`` for every
        packet routed to the receiver, so an instance attribute of that name takes its place.
        The receiver's decoder thread then idles. Checked against aiortc 1.16 (pinned).
        """
        receiver._handle_rtp_packet = self.handle_rtp_packet  # type: ignore[method-assign]

    async def handle_rtp_packet(self, packet: RtpPacket, arrival_time_ms: int) -> None:
        if packet.payload_type != self._payload_type or not packet.payload:
            return  # padding-only probes and other payload types are not audio
        self.received_packets += 1
        level = packet.extensions.audio_level
        if level is not None:
            self.audio_level_dbov = level[1]
        for sink in tuple(self._sinks):
            sink.push(self, packet.timestamp, packet.payload)
