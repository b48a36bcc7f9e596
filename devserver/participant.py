"""One participant's session: its grants, its published tracks, its signal requests."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Protocol

from livekit.protocol import models, rtc

from . import ids
from .auth import Grants
from .dual_pc import DualPcTransport
from .media import AudioFanout, discard_rtp
from .single_pc import SinglePcTransport
from .transport import ForwardSource, PublisherMedia, RtcTransport

logger = logging.getLogger("devserver")

OPUS_MIME_TYPE = "audio/opus"


def _set_mime_type(info: models.TrackInfo, mime_type: str) -> None:
    """The track's codec, on the track and on its (single) codec entry, as LiveKit fills them."""
    info.mime_type = mime_type
    if info.codecs:
        info.codecs[0].mime_type = mime_type


class SignalSink(Protocol):
    """Where a participant's signal responses go (its WebSocket, through a bounded queue)."""

    def send(self, response: rtc.SignalResponse) -> None: ...
    def close_soon(self) -> None: ...


@dataclass(eq=False, slots=True)
class PublishedTrack:
    info: models.TrackInfo
    publisher: Participant
    fanout: AudioFanout | None  # None for media this server does not forward (video)

    @property
    def sid(self) -> str:
        return self.info.sid

    def source(self) -> ForwardSource | None:
        if self.fanout is None:
            return None
        return ForwardSource(
            participant_sid=self.publisher.sid, track_sid=self.info.sid, fanout=self.fanout
        )


@dataclass(slots=True)
class _Identity:
    name: str
    metadata: str
    attributes: dict[str, str] = field(default_factory=dict)


class RoomHost(Protocol):
    """What a participant tells its room (``devserver.room.Room`` implements it), so that this
    module needs nothing from the room's."""

    def on_participant_active(self, participant: Participant) -> None: ...

    def on_participant_changed(
        self, participant: Participant, *, include_self: bool = False
    ) -> None: ...

    def on_track_published(self, publisher: Participant, track: PublishedTrack) -> None: ...

    def on_track_unpublished(self, publisher: Participant, track: PublishedTrack) -> None: ...

    def on_track_forwarding(self, track_sid: str) -> None: ...

    def update_subscription(
        self, subscriber: Participant, track_sids: list[str], subscribe: bool
    ) -> None: ...

    def forward_data(self, sender: Participant, kind: int, raw: bytes) -> None: ...

    def remove_soon(self, participant: Participant, reason: int) -> None: ...


class Participant:
    """A joined client. Owns its transport; the room orchestrates between participants."""

    def __init__(
        self,
        *,
        room: RoomHost,
        grants: Grants,
        client: models.ClientInfo,
        auto_subscribe: bool,
        single_peer_connection: bool,
        signal: SignalSink,
        forward_queue_packets: int,
        metadata: str = "",
        attributes: dict[str, str] | None = None,
    ) -> None:
        self.room = room
        self.grants = grants
        self.sid = ids.new_sid(ids.PARTICIPANT_PREFIX)
        self.identity = grants.identity
        self.client = client
        self.auto_subscribe = auto_subscribe
        self.state: int = models.ParticipantInfo.JOINING
        self.joined_at_ms = int(time.time() * 1000)
        self.disconnect_reason: int = models.UNKNOWN_REASON
        self.published: dict[str, PublishedTrack] = {}
        self._pending_tracks: dict[str, models.TrackInfo] = {}  # cid -> announced track
        self._mid_to_track: dict[str, str] = {}
        self._version = 1
        self._closing: asyncio.Task[None] | None = None
        self._signal = signal
        self._id = _Identity(
            name=grants.name,
            metadata=metadata or grants.metadata,
            attributes={**grants.attributes, **(attributes or {})},
        )
        self.transport: RtcTransport
        if single_peer_connection:
            self.transport = SinglePcTransport(self, forward_queue_packets=forward_queue_packets)
        else:
            self.transport = DualPcTransport(self, forward_queue_packets=forward_queue_packets)

    # -- state --------------------------------------------------------------------------------

    @property
    def hidden(self) -> bool:
        return self.grants.hidden

    @property
    def is_dependent(self) -> bool:
        return self.grants.is_dependent

    @property
    def is_present(self) -> bool:
        return self.state in (models.ParticipantInfo.JOINED, models.ParticipantInfo.ACTIVE)

    def info(self) -> models.ParticipantInfo:
        info = models.ParticipantInfo(
            sid=self.sid,
            identity=self.identity,
            state=self.state,  # type: ignore[arg-type]
            metadata=self._id.metadata,
            joined_at=self.joined_at_ms // 1000,
            joined_at_ms=self.joined_at_ms,
            name=self._id.name,
            version=self._version,
            permission=self.grants.permission(),
            is_publisher=bool(self.published),
            kind=self.grants.kind,  # type: ignore[arg-type]
            disconnect_reason=self.disconnect_reason,  # type: ignore[arg-type]
            client_protocol=self.client.client_protocol,
        )
        info.attributes.update(self._id.attributes)
        info.capabilities.extend(self.client.capabilities)
        info.tracks.extend(t.info for t in self.published.values())
        return info

    def touch(self) -> None:
        """Something visible to others changed: bump the version they order updates by."""
        self._version += 1

    def send(self, response: rtc.SignalResponse) -> None:
        self._signal.send(response)

    def leave(self, reason: int) -> None:
        """Tell the client it has been disconnected by the server."""
        response = rtc.SignalResponse()
        response.leave.can_reconnect = False
        response.leave.reason = reason  # type: ignore[assignment]
        response.leave.action = rtc.LeaveRequest.DISCONNECT
        self.send(response)
        self._signal.close_soon()

    def close(self) -> asyncio.Task[None]:
        """Start closing the connections (once); the task ends even if awaiters are cancelled."""
        if self._closing is None:
            self._closing = asyncio.create_task(self._close(), name=f"participant-close:{self.sid}")
        return self._closing

    async def _close(self) -> None:
        for track in self.published.values():
            if track.fanout is not None:
                track.fanout.clear()
        self._signal.close_soon()
        await self.transport.close()

    # -- transport events (TransportEvents) ---------------------------------------------------

    def send_signal(self, response: rtc.SignalResponse) -> None:
        self.send(response)

    def on_publisher_media(self, media: PublisherMedia) -> None:
        for mid in media.stopped:
            track_sid = self._mid_to_track.pop(mid, None)
            track = self.published.pop(track_sid, None) if track_sid else None
            if track is not None:
                self.touch()
                self.room.on_track_unpublished(self, track)
        for inbound in media.started:
            info = self._pending_tracks.pop(inbound.track_id, None)
            if info is None:
                info = self._only_pending_track(inbound.kind)
            if info is None:
                logger.warning(
                    "client sends media that was never announced with AddTrack",
                    extra={"participant_sid": self.sid, "mid": inbound.mid},
                )
                continue
            info.mid = inbound.mid
            fanout: AudioFanout | None = None
            if inbound.mime_type:
                _set_mime_type(info, inbound.mime_type)
            if inbound.kind == "audio" and inbound.payload_type is not None:
                fanout = AudioFanout(inbound.payload_type)
                fanout.install(inbound.receiver)
            else:
                discard_rtp(inbound.receiver)
                logger.warning(
                    "published media is not forwarded: the dev server forwards Opus audio only",
                    extra={"participant_sid": self.sid, "kind": inbound.kind},
                )
            track = PublishedTrack(info=info, publisher=self, fanout=fanout)
            self.published[info.sid] = track
            self._mid_to_track[inbound.mid] = info.sid
            self.touch()
            self.room.on_track_published(self, track)

    def on_data(self, kind: int, payload: bytes) -> None:
        self.room.forward_data(self, kind, payload)

    def on_connected(self) -> None:
        self.room.on_participant_active(self)

    def on_failed(self) -> None:
        logger.info("participant's peer connection failed", extra={"participant_sid": self.sid})
        self.room.remove_soon(self, models.MEDIA_FAILURE)

    def on_forwarding(self, track_sid: str) -> None:
        self.room.on_track_forwarding(track_sid)

    def publisher_dtx(self, mid: str) -> bool | None:
        track = self.published.get(self._mid_to_track.get(mid, ""))
        if track is None or track.info.type != models.AUDIO:
            return None
        no_dtx = models.AudioTrackFeature.TF_NO_DTX in track.info.audio_features
        return not (track.info.disable_dtx or no_dtx)

    # -- signal requests ----------------------------------------------------------------------

    async def handle_request(self, request: rtc.SignalRequest) -> None:
        kind = request.WhichOneof("message")
        if kind == "offer":
            await self.transport.handle_offer(request.offer.sdp, request.offer.id)
        elif kind == "answer":
            await self.transport.handle_answer(request.answer.sdp, request.answer.id)
        elif kind == "trickle":
            await self.transport.add_ice_candidate(
                request.trickle.target, request.trickle.candidateInit
            )
        elif kind == "add_track":
            self._add_track(request.add_track)
        elif kind == "mute":
            self._mute(request.mute.sid, request.mute.muted)
        elif kind == "subscription":
            self.room.update_subscription(
                self, list(request.subscription.track_sids), request.subscription.subscribe
            )
        elif kind == "track_setting":
            for sid in request.track_setting.track_sids:
                self.transport.set_paused(sid, request.track_setting.disabled)
        elif kind == "update_metadata":
            self._update_metadata(request.update_metadata)
        elif kind == "update_audio_track":
            self._update_audio_track(request.update_audio_track)
        elif kind in {"leave", "ping", "ping_req"}:
            pass  # handled by the signalling loop
        else:
            logger.debug("ignoring unsupported signal request", extra={"request": kind})

    def _add_track(self, request: rtc.AddTrackRequest) -> None:
        if not self.grants.may_publish_source(request.source):
            logger.warning(
                "refused AddTrack: the token does not allow publishing this source",
                extra={"participant_sid": self.sid},
            )
            response = rtc.SignalResponse()
            response.request_response.reason = rtc.RequestResponse.NOT_ALLOWED
            response.request_response.message = "the token does not allow publishing"
            response.request_response.add_track.CopyFrom(request)
            self.send(response)
            return
        info = models.TrackInfo(
            sid=request.sid or ids.new_sid(ids.TRACK_PREFIX),
            type=request.type,
            name=request.name,
            muted=request.muted,
            disable_dtx=request.disable_dtx,
            source=request.source,
            stereo=request.stereo,
            disable_red=request.disable_red,
            encryption=request.encryption,
            stream=request.stream,
        )
        info.audio_features.extend(request.audio_features)
        info.codecs.add(cid=request.cid)
        if request.type == models.AUDIO:
            # the only audio codec this server negotiates; confirmed (or corrected) by the offer
            _set_mime_type(info, OPUS_MIME_TYPE)
        self._pending_tracks[request.cid] = info
        response = rtc.SignalResponse()
        response.track_published.cid = request.cid
        response.track_published.track.CopyFrom(info)
        self.send(response)

    def _only_pending_track(self, kind: str) -> models.TrackInfo | None:
        wanted = models.AUDIO if kind == "audio" else models.VIDEO
        matches = [cid for cid, info in self._pending_tracks.items() if info.type == wanted]
        return self._pending_tracks.pop(matches[0]) if len(matches) == 1 else None

    def _mute(self, track_sid: str, muted: bool) -> None:
        track = self.published.get(track_sid)
        if track is None or track.info.muted == muted:
            return
        track.info.muted = muted
        self.touch()
        self.room.on_participant_changed(self)

    def _update_metadata(self, request: rtc.UpdateParticipantMetadata) -> None:
        if not self.grants.can_update_own_metadata:
            response = rtc.SignalResponse()
            response.request_response.request_id = request.request_id
            response.request_response.reason = rtc.RequestResponse.NOT_ALLOWED
            response.request_response.message = "the token does not allow updating metadata"
            self.send(response)
            return
        if request.name:
            self._id.name = request.name
        if request.metadata:
            self._id.metadata = request.metadata
        for key, value in request.attributes.items():
            if value:
                self._id.attributes[key] = value
            else:
                self._id.attributes.pop(key, None)
        self.touch()
        response = rtc.SignalResponse()
        response.request_response.request_id = request.request_id
        response.request_response.reason = rtc.RequestResponse.OK
        self.send(response)
        self.room.on_participant_changed(self, include_self=True)

    def _update_audio_track(self, request: rtc.UpdateLocalAudioTrack) -> None:
        track = self.published.get(request.track_sid)
        if track is None:
            return
        del track.info.audio_features[:]
        track.info.audio_features.extend(request.features)
        self.touch()
        self.room.on_participant_changed(self)
