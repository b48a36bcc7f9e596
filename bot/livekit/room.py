"""One room: join as a hidden agent, caption every non-agent microphone track.

``RoomTranscriber.run`` connects, starts a track pipeline when a microphone track is
subscribed (or unmuted) and stops it on unsubscribe, mute or leave. A pipeline is

    rtc.AudioStream (16 kHz mono, bounded) -> StreamTranscriber -> captions
        -> the room (three forms, ``RoomCaptionPublisher``) and the observer (persistence)

A failure in one pipeline is logged and counted and ends that pipeline only. The room ends
when ``stop`` is set (job stopped, worker draining), when only agents have been present for
``empty_timeout_s`` (not counting time the SDK spends reconnecting), or when the connection ends;
the open utterances are finished first. How it ended says what the worker does next: a
connection that was lost (``DISCONNECTED``: the server died or went unreachable and the SDK gave
up) is worth joining again while the session is live; one the server ended on purpose
(``REMOVED``: room deleted or closed, the bot removed, its identity taken) is not. Each ``run`` is
one connection with a fresh ``rtc.Room``; usage accumulates across them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol

import numpy as np
from livekit import rtc

from bot import metrics
from bot.livekit.captions import CaptionOutbox, RoomCaptionPublisher, Speaker, SpokenCaption
from bot.pipeline.engine import SpeechEngine, StreamStats, StreamTranscriber
from bot.pipeline.types import SAMPLE_RATE_HZ

logger = logging.getLogger("bot.livekit")


class RoomObserver(Protocol):
    """What the worker learns from a room (it persists these)."""

    async def participant_joined(self, identity: str, name: str) -> None: ...

    async def participant_left(self, identity: str) -> None: ...

    async def track_started(self, speaker: Speaker) -> bool:
        """Whether the track may be transcribed (limits and quota)."""
        ...

    async def track_stopped(self, speaker: Speaker) -> None: ...

    async def caption(self, item: SpokenCaption) -> None: ...


class EndReason(StrEnum):
    STOPPED = "stopped"
    EMPTY = "empty"
    DISCONNECTED = "disconnected"  # the connection was lost: rejoin while the session is live
    REMOVED = "removed"  # the server ended it on purpose


# Disconnect reasons that mean "the server meant it"; any other is a lost connection.
_REMOVED_REASONS = frozenset(
    {
        rtc.DisconnectReason.CLIENT_INITIATED,
        rtc.DisconnectReason.DUPLICATE_IDENTITY,
        rtc.DisconnectReason.PARTICIPANT_REMOVED,
        rtc.DisconnectReason.ROOM_DELETED,
        rtc.DisconnectReason.ROOM_CLOSED,
        rtc.DisconnectReason.USER_REJECTED,
    }
)


@dataclass(frozen=True, slots=True)
class RoomOptions:
    empty_timeout_s: float = 20.0
    max_tracks: int = 16
    # Frames the AudioStream delivers: 100 ms each. Every frame is a wake-up through the SDK's
    # native and Python layers: 50 ms frames made a connected silent track cost ~1 point of a
    # core more (bench/bot.py), for ~25 ms of average caption latency. How much audio the
    # stream may hold before dropping the oldest: 10 s.
    frame_ms: int = 100
    audio_queue_s: float = 10.0
    drain_timeout_s: float = 20.0
    legacy_transcription: bool = True


@dataclass(slots=True)
class TrackUsage:
    """Cumulative usage of one track over all its pipelines (a mute ends one, unmute starts one)."""

    speaker: Speaker
    audio_s: float = 0.0
    speech_s: float = 0.0
    partials: int = 0
    finals: int = 0
    errors: int = 0
    live: StreamStats | None = field(default=None, repr=False)

    def snapshot(self) -> TrackUsage:
        s = self.live or StreamStats()
        return TrackUsage(
            self.speaker,
            self.audio_s + s.audio_s,
            self.speech_s + s.speech_s,
            self.partials + s.partials,
            self.finals + s.finals,
            self.errors + s.errors,
        )

    def fold(self, stats: StreamStats) -> None:
        self.audio_s += stats.audio_s
        self.speech_s += stats.speech_s
        self.partials += stats.partials
        self.finals += stats.finals
        self.errors += stats.errors
        self.live = None


def _is_agent(participant: rtc.RemoteParticipant) -> bool:
    return bool(participant.kind == rtc.ParticipantKind.PARTICIPANT_KIND_AGENT)


def _is_microphone(publication: rtc.RemoteTrackPublication) -> bool:
    return publication.kind == rtc.TrackKind.KIND_AUDIO and publication.source in (
        rtc.TrackSource.SOURCE_MICROPHONE,
        rtc.TrackSource.SOURCE_UNKNOWN,
    )


class RoomTranscriber:
    def __init__(
        self, engine: SpeechEngine, observer: RoomObserver, options: RoomOptions | None = None
    ) -> None:
        self.engine = engine
        self.observer = observer
        self.options = options or RoomOptions()
        self.room: rtc.Room | None = None  # the connection of the current run()
        self.usage: dict[str, TrackUsage] = {}  # by track sid
        self.pipeline_failures = 0
        self._pipelines: dict[str, tuple[asyncio.Task[None], rtc.AudioStream]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._humans: set[str] = set()
        self._changed = asyncio.Event()
        self._disconnected = asyncio.Event()
        self._removed = False
        self._reconnecting = False
        self._publisher: RoomCaptionPublisher | None = None

    # -- lifecycle ------------------------------------------------------------------------------
    async def run(self, url: str, token: str, stop: asyncio.Event) -> EndReason:
        """One connection to the room, until it ends (raises ``rtc.ConnectError`` if none)."""
        self.room = room = rtc.Room()
        self._humans.clear()
        self._disconnected = asyncio.Event()
        self._removed = self._reconnecting = False
        room.on("participant_connected", self._on_participant_connected)
        room.on("participant_disconnected", self._on_participant_disconnected)
        room.on("track_subscribed", self._on_track_subscribed)
        room.on("track_unsubscribed", self._on_track_unsubscribed)
        room.on("track_muted", self._on_track_muted)
        room.on("track_unmuted", self._on_track_unmuted)
        room.on("disconnected", self._on_disconnected)
        room.on("reconnecting", lambda: self._set_reconnecting(True))
        room.on("reconnected", lambda: self._set_reconnecting(False))
        await room.connect(url, token, rtc.RoomOptions(auto_subscribe=True))
        self._publisher = RoomCaptionPublisher(
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
            return await self._wait_for_end(stop)
        finally:
            await self._drain()
            await room.disconnect()
            logger.info("left room", extra={"room": room.name})

    async def _wait_for_end(self, stop: asyncio.Event) -> EndReason:
        empty_since: float | None = None
        loop = asyncio.get_running_loop()
        while True:
            if stop.is_set():
                return EndReason.STOPPED
            if self._disconnected.is_set():
                return EndReason.REMOVED if self._removed else EndReason.DISCONNECTED
            if self._humans or self._reconnecting:
                empty_since = None
            elif empty_since is None:
                empty_since = loop.time()
            elif loop.time() - empty_since >= self.options.empty_timeout_s:
                return EndReason.EMPTY
            self._changed.clear()
            waiters = [
                asyncio.ensure_future(e.wait()) for e in (stop, self._disconnected, self._changed)
            ]
            await asyncio.wait(waiters, timeout=0.5, return_when=asyncio.FIRST_COMPLETED)
            for w in waiters:
                w.cancel()

    async def _drain(self) -> None:
        """Finish every open utterance: close the audio, let the captions out."""
        for sid in list(self._pipelines):
            self._stop_pipeline(sid)
        pending = [t for t in self._tasks if not t.done()]
        if pending:
            _, late = await asyncio.wait(pending, timeout=self.options.drain_timeout_s)
            for task in late:
                task.cancel()
            if late:
                await asyncio.gather(*late, return_exceptions=True)

    # -- room events (sync callbacks from the SDK) ------------------------------------------------
    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_disconnected(
        self, reason: rtc.DisconnectReason.ValueType = rtc.DisconnectReason.UNKNOWN_REASON
    ) -> None:
        self._removed = reason in _REMOVED_REASONS
        logger.info("disconnected from room", extra={"reason": rtc.DisconnectReason.Name(reason)})
        self._disconnected.set()

    def _set_reconnecting(self, reconnecting: bool) -> None:
        self._reconnecting = reconnecting
        logger.info("reconnecting to room" if reconnecting else "reconnected to room")
        self._changed.set()

    def _on_participant_connected(self, participant: rtc.RemoteParticipant) -> None:
        if _is_agent(participant):
            return
        self._humans.add(participant.identity)
        self._changed.set()
        self._spawn(
            self.observer.participant_joined(participant.identity, participant.name or ""),
            name=f"joined:{participant.sid}",
        )

    def _on_participant_disconnected(self, participant: rtc.RemoteParticipant) -> None:
        if _is_agent(participant):
            return
        self._humans.discard(participant.identity)
        self._changed.set()
        for sid, usage in list(self.usage.items()):
            if usage.speaker.identity == participant.identity:
                self._stop_pipeline(sid)
        self._spawn(
            self.observer.participant_left(participant.identity), name=f"left:{participant.sid}"
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
        self._start_pipeline(track, participant)

    def _on_track_unsubscribed(
        self,
        track: rtc.Track,
        publication: rtc.RemoteTrackPublication,
        participant: rtc.RemoteParticipant,
    ) -> None:
        self._stop_pipeline(publication.sid)

    def _on_track_muted(
        self, participant: rtc.Participant, publication: rtc.TrackPublication
    ) -> None:
        self._stop_pipeline(publication.sid)

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
            self._start_pipeline(track, participant)

    # -- track pipelines --------------------------------------------------------------------------
    def _start_pipeline(
        self, track: rtc.RemoteAudioTrack, participant: rtc.RemoteParticipant
    ) -> None:
        sid = track.sid
        if sid in self._pipelines:
            return
        if len(self._pipelines) >= self.options.max_tracks:
            logger.warning("track limit reached; track not transcribed", extra={"track_sid": sid})
            return
        name = participant.name or participant.identity
        speaker = Speaker(identity=participant.identity, name=name, track_sid=sid, label=name)
        usage = self.usage.setdefault(sid, TrackUsage(speaker))
        audio = rtc.AudioStream.from_track(
            track=track,
            sample_rate=SAMPLE_RATE_HZ,
            num_channels=1,
            capacity=max(1, round(self.options.audio_queue_s * 1000 / self.options.frame_ms)),
            frame_size_ms=self.options.frame_ms,
        )
        stream = self.engine.open_stream(f"{participant.identity}/{sid}")
        usage.live = stream.stats
        task = asyncio.get_running_loop().create_task(
            self._pipeline(speaker, audio, stream, usage), name=f"track:{sid}"
        )
        self._pipelines[sid] = (task, audio)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _stop_pipeline(self, sid: str) -> None:
        entry = self._pipelines.pop(sid, None)
        if entry is not None:
            _, audio = entry
            # Closing the stream ends the feed; the pipeline then finishes its utterance.
            self._spawn(audio.aclose(), name=f"close:{sid}")

    async def _pipeline(
        self,
        speaker: Speaker,
        audio: rtc.AudioStream,
        stream: StreamTranscriber,
        usage: TrackUsage,
    ) -> None:
        if not await self.observer.track_started(speaker):
            logger.info(
                "track not transcribed: limit reached", extra={"track_sid": speaker.track_sid}
            )
            await self._close_pipeline(speaker, audio, stream, usage)
            return
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._feed(audio, stream), name=f"feed:{speaker.track_sid}")
                outbox = CaptionOutbox()
                tg.create_task(
                    self._emit(stream, speaker, outbox), name=f"emit:{speaker.track_sid}"
                )
                tg.create_task(self._publish(outbox, speaker), name=f"publish:{speaker.track_sid}")
        except* Exception:
            self.pipeline_failures += 1
            metrics.PIPELINE_FAILURES.inc()
            stream.stats.errors += 1
            logger.exception("track pipeline failed", extra={"track_sid": speaker.track_sid})
        finally:
            await self._close_pipeline(speaker, audio, stream, usage)
            await self.observer.track_stopped(speaker)

    async def _close_pipeline(
        self,
        speaker: Speaker,
        audio: rtc.AudioStream,
        stream: StreamTranscriber,
        usage: TrackUsage,
    ) -> None:
        await stream.aclose()
        with contextlib.suppress(Exception):
            await audio.aclose()
        usage.fold(stream.stats)
        if self._pipelines.get(speaker.track_sid, (None,))[0] is asyncio.current_task():
            self._pipelines.pop(speaker.track_sid, None)

    async def _feed(self, audio: rtc.AudioStream, stream: StreamTranscriber) -> None:
        async for event in audio:
            pcm = np.frombuffer(event.frame.data, dtype=np.int16)
            await stream.push_audio(pcm.astype(np.float32) / 32768.0)
        await stream.end_input()

    async def _emit(
        self, stream: StreamTranscriber, speaker: Speaker, outbox: CaptionOutbox
    ) -> None:
        started_at = datetime.now(UTC)
        try:
            async for caption in stream.captions():
                item = SpokenCaption(caption, speaker, started_at)
                # Persistence first (a local write-ahead append): a final the room has seen
                # must survive a crash right after publishing.
                await self.observer.caption(item)
                outbox.put(item)
        finally:
            outbox.close()

    async def _publish(self, outbox: CaptionOutbox, speaker: Speaker) -> None:
        assert self._publisher is not None
        while (item := await outbox.get()) is not None:
            try:
                await self._publisher.publish(item)
            except Exception:  # the room may be going away; the final is stored anyway
                logger.warning("caption publish failed", extra={"track_sid": speaker.track_sid})
