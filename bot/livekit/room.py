"""One room: join as a hidden agent, hand every non-agent microphone track to the listener.

``RoomAgent.join`` connects (retrying with backoff while LiveKit is unreachable) and stays until
it is time to leave (``presence``). Each subscribed (or unmuted) microphone track becomes a
``LiveKitAudioSource`` and a call of ``RoomListener.transcribe`` with the room's caption
publisher; unsubscribe, mute and leave close that source, and the listener finishes the open
utterance before returning. Leaving waits ``drain_timeout_s`` for that, then cancels. Each
connection is a fresh ``rtc.Room``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

from livekit import rtc

from bot import metrics
from bot.livekit.audio import LiveKitAudioSource
from bot.livekit.captions import RoomCaptionPublisher
from bot.livekit.presence import LeaveReason, Presence, leave_reason
from bot.pipeline.track import AudioSource, CaptionSink
from bot.pipeline.track_diarization import PARTICIPANT_ATTRIBUTE
from bot.pipeline.types import Speaker, SpokenCaption
from core.errors import LiveKitUnavailable
from core.logs import error_fields

logger = logging.getLogger("bot.livekit")

MAX_RETRY_DELAY_S = 2.0


class RoomListener(Protocol):
    """What the bot does with a room's participants and tracks."""

    async def participant_joined(self, identity: str, name: str) -> None: ...

    async def participant_left(self, identity: str) -> None: ...

    async def transcribe(self, speaker: Speaker, audio: AudioSource, room: CaptionSink) -> None:
        """Caption one track until ``audio`` ends (the room closes it to stop the track)."""
        ...


@dataclass(frozen=True, slots=True)
class RoomOptions:
    empty_timeout_s: float = 20.0  # after the last participant left
    first_join_timeout_s: float = 300.0  # while nobody has come yet (presence.py)
    max_tracks: int = 16
    # Frames the AudioStream delivers: 100 ms each. Every frame is a wake-up through the SDK's
    # native and Python layers: 50 ms frames made a connected silent track cost ~1 point of a
    # core more (bench/bot.py), for ~25 ms of average caption latency. How much audio the
    # stream may hold before dropping the oldest: 10 s.
    frame_ms: int = 100
    audio_queue_s: float = 10.0
    drain_timeout_s: float = 20.0
    legacy_transcription: bool = True


def _is_agent(participant: rtc.RemoteParticipant) -> bool:
    return bool(participant.kind == rtc.ParticipantKind.PARTICIPANT_KIND_AGENT)


def _is_microphone(publication: rtc.RemoteTrackPublication) -> bool:
    return publication.kind == rtc.TrackKind.KIND_AUDIO and publication.source in (
        rtc.TrackSource.SOURCE_MICROPHONE,
        rtc.TrackSource.SOURCE_UNKNOWN,
    )


class _RoomCaptions:
    """The caption publisher of the current connection (a track may be taken during connect)."""

    def __init__(self) -> None:
        self.publisher: RoomCaptionPublisher | None = None

    async def publish(self, item: SpokenCaption) -> None:
        assert self.publisher is not None
        await self.publisher.publish(item)


class RoomAgent:
    def __init__(self, listener: RoomListener, options: RoomOptions | None = None) -> None:
        self.listener = listener
        self.options = options or RoomOptions()
        self._tracks: dict[str, tuple[asyncio.Task[None], AudioSource]] = {}
        self._speakers: dict[str, Speaker] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._presence = self._new_presence()
        self._captions = _RoomCaptions()

    def _new_presence(self) -> Presence:
        return Presence(self.options.empty_timeout_s, self.options.first_join_timeout_s)

    # -- lifecycle ------------------------------------------------------------------------------
    async def join(
        self, url: str, token: str, stop: asyncio.Event, *, attempts: int | None
    ) -> LeaveReason | None:
        """Connect with backoff and stay until it is time to leave; None if LiveKit stayed
        unreachable for ``attempts`` tries (None: try until ``stop``)."""
        delay = 1.0
        attempt = 0
        while attempts is None or attempt < attempts:
            attempt += 1
            if stop.is_set():
                return LeaveReason.STOPPED
            try:
                return await self.run(url, token, stop)
            except LiveKitUnavailable as exc:
                metrics.LIVEKIT_CONNECT_FAILURES.inc()
                logger.warning(
                    "livekit connect failed",
                    # the SDK's message may quote the URL with its access token: no message
                    extra={"attempt": attempt, "retry_in_s": delay, **error_fields(exc)},
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            # At most 2 s between tries (a refused connection costs little): captions resume within
            # seconds of LiveKit's return.
            delay = min(MAX_RETRY_DELAY_S, delay * 2)
        return None

    async def run(self, url: str, token: str, stop: asyncio.Event) -> LeaveReason:
        """One connection to the room, until it ends (``LiveKitUnavailable`` if none)."""
        room = rtc.Room()
        self._presence = presence = self._new_presence()
        room.on("participant_connected", self._on_participant_connected)
        room.on("participant_disconnected", self._on_participant_disconnected)
        room.on("track_subscribed", self._on_track_subscribed)
        room.on("track_unsubscribed", self._on_track_unsubscribed)
        room.on("track_muted", self._on_track_muted)
        room.on("track_unmuted", self._on_track_unmuted)
        room.on("disconnected", self._on_disconnected)
        room.on("reconnecting", lambda: presence.reconnecting(True))
        room.on("reconnected", lambda: presence.reconnecting(False))
        try:
            await room.connect(url, token, rtc.RoomOptions(auto_subscribe=True))
        except rtc.ConnectError as exc:
            raise LiveKitUnavailable(str(exc)) from exc
        self._captions.publisher = RoomCaptionPublisher(
            room.local_participant, legacy=self.options.legacy_transcription
        )
        logger.info("joined room", extra={"room": room.name})
        for participant in list(room.remote_participants.values()):
            self._on_participant_connected(participant)
            for publication in participant.track_publications.values():
                track = publication.track
                if isinstance(track, rtc.RemoteAudioTrack) and not publication.muted:
                    self._on_track_subscribed(track, publication, participant)
        try:
            return await presence.wait(stop)
        finally:
            await self._drain()
            await room.disconnect()
            logger.info("left room", extra={"room": room.name})

    async def _drain(self) -> None:
        """Finish every open utterance: close the audio, let the captions out."""
        for sid in list(self._tracks):
            self._stop_track(sid)
        pending = [t for t in self._tasks if not t.done()]
        if pending:
            _, late = await asyncio.wait(pending, timeout=self.options.drain_timeout_s)
            for task in late:
                task.cancel()
            if late:
                await asyncio.gather(*late, return_exceptions=True)

    # -- room events (sync callbacks from the SDK) ------------------------------------------------
    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _on_disconnected(
        self, reason: rtc.DisconnectReason.ValueType = rtc.DisconnectReason.UNKNOWN_REASON
    ) -> None:
        logger.info("disconnected from room", extra={"reason": rtc.DisconnectReason.Name(reason)})
        self._presence.disconnected(leave_reason(reason))

    def _on_participant_connected(self, participant: rtc.RemoteParticipant) -> None:
        if _is_agent(participant):
            return
        self._presence.joined(participant.identity)
        self._spawn(
            self.listener.participant_joined(participant.identity, participant.name or ""),
            name=f"joined:{participant.sid}",
        )

    def _on_participant_disconnected(self, participant: rtc.RemoteParticipant) -> None:
        if _is_agent(participant):
            return
        self._presence.left(participant.identity)
        for sid, speaker in list(self._speakers.items()):
            if speaker.identity == participant.identity:
                self._stop_track(sid)
        self._spawn(
            self.listener.participant_left(participant.identity), name=f"left:{participant.sid}"
        )

    def _on_track_subscribed(
        self,
        track: rtc.Track,
        publication: rtc.RemoteTrackPublication,
        participant: rtc.RemoteParticipant,
    ) -> None:
        if not isinstance(track, rtc.RemoteAudioTrack) or _is_agent(participant):
            return
        if not _is_microphone(publication) or publication.muted:
            return
        self._start_track(track, participant)

    def _on_track_unsubscribed(
        self,
        track: rtc.Track,
        publication: rtc.RemoteTrackPublication,
        participant: rtc.RemoteParticipant,
    ) -> None:
        self._stop_track(publication.sid)

    def _on_track_muted(
        self, participant: rtc.Participant, publication: rtc.TrackPublication
    ) -> None:
        self._stop_track(publication.sid)

    def _on_track_unmuted(
        self, participant: rtc.Participant, publication: rtc.TrackPublication
    ) -> None:
        track = publication.track
        if (
            isinstance(participant, rtc.RemoteParticipant)
            and isinstance(track, rtc.RemoteAudioTrack)
            and isinstance(publication, rtc.RemoteTrackPublication)
            and _is_microphone(publication)
        ):
            self._start_track(track, participant)

    # -- tracks -----------------------------------------------------------------------------------
    def _start_track(self, track: rtc.RemoteAudioTrack, participant: rtc.RemoteParticipant) -> None:
        sid = track.sid
        if sid in self._tracks:
            return
        if len(self._tracks) >= self.options.max_tracks:
            logger.warning("track limit reached; track not transcribed", extra={"track_sid": sid})
            return
        name = participant.name or participant.identity
        speaker = Speaker(
            identity=participant.identity,
            name=name,
            track_sid=sid,
            label=name,
            # the host app's per-participant diarization mode (e.g. "on" for a room system)
            diarization=participant.attributes.get(PARTICIPANT_ATTRIBUTE),
        )
        self._speakers[sid] = speaker
        audio = LiveKitAudioSource(
            track, frame_ms=self.options.frame_ms, queue_s=self.options.audio_queue_s
        )
        task = self._spawn(self._transcribe(speaker, audio), name=f"track:{sid}")
        self._tracks[sid] = (task, audio)

    def _stop_track(self, sid: str) -> None:
        entry = self._tracks.pop(sid, None)
        if entry is not None:
            _, audio = entry
            # Closing the source ends the feed; the pipeline then finishes its utterance.
            self._spawn(audio.aclose(), name=f"close:{sid}")

    async def _transcribe(self, speaker: Speaker, audio: AudioSource) -> None:
        try:
            await self.listener.transcribe(speaker, audio, self._captions)
        finally:
            with contextlib.suppress(Exception):
                await audio.aclose()
            sid = speaker.track_sid
            if self._tracks.get(sid, (None,))[0] is asyncio.current_task():
                self._tracks.pop(sid, None)
