"""The worker: claims transcription jobs from Postgres and runs one ``RoomTranscriber`` per job.

Jobs are claimed with ``FOR UPDATE SKIP LOCKED`` (``Store.jobs.claim_job``) and held by a lease
that a heartbeat renews every third of ``JOB_LEASE_S``. The worker wakes on ``LISTEN/NOTIFY``
and polls every ``JOB_POLL_S`` as a fallback (a missed notification, or a listener connection
that died). A worker that dies stops renewing: its leases expire and another worker claims the
rooms. ``stop`` (SIGTERM) drains: rooms finish their open utterances, usage is written, finals
are flushed, and leases are given back for another worker to take.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import livekit.api as lkapi
from livekit import rtc

from bot import metrics
from bot.config import BotSettings
from bot.livekit.captions import Speaker, SpokenCaption
from bot.livekit.room import EndReason, RoomOptions, RoomTranscriber, TrackUsage
from bot.pipeline.engine import SpeechEngine
from bot.spool import FinalSpool
from core.errors import LimitExceeded, StorageError
from store.enums import SessionStatus
from store.notify import JobListener
from store.records import (
    FinalSegment,
    JobLease,
    JobNotification,
    SessionRecord,
    UsageCheckpoint,
    WordTiming,
)
from store.stores import Store

logger = logging.getLogger("bot.worker")

# LiveKit room names we accept: the API's session slugs, and nothing that could smuggle
# control characters or paths into logs and URLs.
ROOM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
MAX_RETRY_DELAY_S = 2.0


def agent_token(settings: BotSettings, room_name: str) -> str:
    """A join token of kind ``agent``: hidden, subscribes, publishes data only."""
    grants = lkapi.VideoGrants(
        room_join=True,
        room=room_name,
        hidden=True,
        can_subscribe=True,
        can_publish=False,
        can_publish_data=True,
        agent=True,
    )
    return (
        lkapi.AccessToken(settings.livekit_api_key, settings.livekit_api_secret)
        .with_identity(settings.bot_identity)
        .with_name(settings.bot_name)
        .with_kind("agent")
        .with_grants(grants)
        .with_ttl(timedelta(hours=12))
        .to_jwt()
    )


@dataclass
class _Reported:
    audio_s: float = 0.0
    speech_s: float = 0.0
    partials: int = 0
    finals: int = 0
    errors: int = 0


class StorageObserver:
    """Persists what a room reports: participants, finals (through the spool) and usage."""

    def __init__(
        self,
        repo: Store,
        spool: FinalSpool,
        session: SessionRecord,
        settings: BotSettings,
        model: str,
    ) -> None:
        self._repo = repo
        self._spool = spool
        self._session = session
        self._settings = settings
        self._model = model
        # Caption times become offsets on the session's timeline.
        self._origin = session.started_at or datetime.now(UTC)
        self._reported: dict[str, _Reported] = {}
        self._unopened: dict[str, Speaker] = {}
        self._ended: set[str] = set()
        self._limits = settings.transcription_limits()

    async def participant_joined(self, identity: str, name: str) -> None:
        try:
            await self._repo.sessions.participant_joined(
                self._session.id, identity, name=name or None
            )
        except StorageError:
            logger.warning("participant join not recorded", extra={"session_id": self._session.id})

    async def participant_left(self, identity: str) -> None:
        try:
            await self._repo.sessions.participant_left(self._session.id, identity)
        except StorageError:
            logger.warning("participant leave not recorded", extra={"session_id": self._session.id})

    async def track_started(self, speaker: Speaker) -> bool:
        self._ended.discard(speaker.track_sid)
        try:
            await self._open(speaker)
        except LimitExceeded:
            metrics.TRACKS_REFUSED.inc()
            return False
        except StorageError:
            # The database is down: transcribe anyway, open the usage row when it is back.
            self._unopened[speaker.track_sid] = speaker
        return True

    async def _open(self, speaker: Speaker) -> None:
        await self._repo.sessions.participant_joined(
            self._session.id, speaker.identity, name=speaker.name or None
        )
        await self._repo.usage.open_track_usage(
            session_id=self._session.id,
            participant_identity=speaker.identity,
            track_sid=speaker.track_sid,
            model=self._model,
            cost_per_minute=self._settings.transcription_cost_per_minute,
            currency=self._settings.transcription_currency,
            limits=self._limits,
        )
        self._unopened.pop(speaker.track_sid, None)

    async def track_stopped(self, speaker: Speaker) -> None:
        self._ended.add(speaker.track_sid)

    async def caption(self, item: SpokenCaption) -> None:
        c = item.caption
        metrics.CAPTIONS.labels(kind="final" if c.is_final else "partial").inc()
        if not c.is_final or not c.text.strip():
            return
        speech_end_ms = c.words[-1].end_ms if c.words else c.end_ms
        spoken_at = item.stream_started_at + timedelta(milliseconds=speech_end_ms)
        metrics.CAPTION_LATENCY.observe(max(0.0, (datetime.now(UTC) - spoken_at).total_seconds()))
        offset_ms = round((item.stream_started_at - self._origin).total_seconds() * 1000)
        self._spool.put(
            FinalSegment(
                session_id=self._session.id,
                utterance_id=c.utterance_id,
                track_sid=item.speaker.track_sid,
                text=c.text,
                start_ms=max(0, offset_ms + c.start_ms),
                end_ms=max(0, offset_ms + c.end_ms),
                participant_identity=item.speaker.identity,
                speaker_label=item.speaker.label,
                language=c.language or None,
                started_at=item.stream_started_at + timedelta(milliseconds=c.start_ms),
                ended_at=item.stream_started_at + timedelta(milliseconds=c.end_ms),
                words=tuple(
                    WordTiming(w.text, offset_ms + w.start_ms, offset_ms + w.end_ms, w.probability)
                    for w in c.words
                ),
                confidence=c.confidence,
                model=self._model,
            )
        )

    async def checkpoint(self, usage: dict[str, TrackUsage]) -> None:
        """Write usage increments since the last successful checkpoint."""
        for speaker in list(self._unopened.values()):
            try:
                await self._open(speaker)
            except LimitExceeded:
                self._unopened.pop(speaker.track_sid, None)  # already transcribed: bill it anyway
            except StorageError:
                return
        checkpoints: list[UsageCheckpoint] = []
        snapshots: dict[str, TrackUsage] = {}
        for sid, track in usage.items():
            now = track.snapshot()
            before = self._reported.setdefault(sid, _Reported())
            ended = sid in self._ended
            delta_audio = now.audio_s - before.audio_s
            if delta_audio <= 0 and now.finals == before.finals and not ended:
                continue
            snapshots[sid] = now
            checkpoints.append(
                UsageCheckpoint(
                    session_id=self._session.id,
                    track_sid=sid,
                    audio_seconds=Decimal(f"{max(0.0, delta_audio):.3f}"),
                    speech_seconds=Decimal(f"{max(0.0, now.speech_s - before.speech_s):.3f}"),
                    partial_count=max(0, now.partials - before.partials),
                    final_count=max(0, now.finals - before.finals),
                    error_count=max(0, now.errors - before.errors),
                    ended=ended,
                )
            )
        if not checkpoints:
            return
        try:
            await self._repo.usage.checkpoint_usage(checkpoints)
        except StorageError:
            metrics.DB_WRITE_FAILURES.labels(kind="usage").inc()
            logger.warning("usage checkpoint failed; retried next time")
            return
        for sid, now in snapshots.items():
            self._reported[sid] = _Reported(
                now.audio_s, now.speech_s, now.partials, now.finals, now.errors
            )
            if sid in self._ended:
                self._ended.discard(sid)


@dataclass
class _RoomHandle:
    lease: JobLease
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    draining: bool = False
    lost: bool = False
    task: asyncio.Task[None] | None = None
    live_tracks: int = 0  # tracks of this room being transcribed, as of the last checkpoint


class Worker:
    def __init__(
        self,
        settings: BotSettings,
        repo: Store,
        engine: SpeechEngine,
        spool: FinalSpool,
        database_url: str,
    ) -> None:
        self.settings = settings
        self.repo = repo
        self.engine = engine
        self.spool = spool
        self.database_url = database_url
        self.rooms: dict[int, _RoomHandle] = {}
        self._ready = False
        metrics.WORKER_READY.set(0)
        self._lease_for = timedelta(seconds=settings.job_lease_s)
        self._recovering = asyncio.Lock()

    @property
    def ready(self) -> bool:
        """True while the job listener is connected: the model is loaded (the worker is built
        after it) and the database answers. ``/ready`` and ``transcriber_worker_ready``."""
        return self._ready

    @ready.setter
    def ready(self, value: bool) -> None:
        self._ready = value
        metrics.WORKER_READY.set(1 if value else 0)

    # -- main loop ------------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        await self._recover_orphans()
        backoff = 1.0
        while not stop.is_set():
            try:
                async with JobListener(self.database_url) as listener:
                    self.ready = True
                    backoff = 1.0
                    while not stop.is_set():
                        await self._claim()
                        note = await self._wait(listener, stop)
                        if note is not None and note.event == "stopped":
                            handle = self.rooms.get(note.job_id)
                            if handle is not None:
                                handle.stop.set()
            except StorageError:
                self.ready = False
                logger.warning("job listener lost; polling", extra={"retry_in_s": backoff})
                # Keep claiming by polling while LISTEN is unavailable.
                with contextlib.suppress(StorageError):
                    await self._claim()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), backoff)
                backoff = min(30.0, backoff * 2)
        await self.drain()

    async def _wait(self, listener: JobListener, stop: asyncio.Event) -> JobNotification | None:
        waiter = asyncio.ensure_future(listener.wait(timeout_s=self.settings.job_poll_s))
        stopper = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
        if not waiter.done():
            waiter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await waiter
            return None
        return waiter.result()

    async def _claim(self) -> None:
        while len(self.rooms) < self.settings.max_rooms:
            lease = await self.repo.jobs.claim_job(
                self.settings.worker_id, lease_for=self._lease_for
            )
            if lease is None:
                return
            current = self.rooms.get(lease.job_id)
            if current is not None:
                # Our own job, re-claimed after our lease expired (a long database outage): the
                # room goes on under the new lease; the old one is fenced off.
                current.lease = lease
                continue
            if lease.attempt > 1:
                # A takeover: the previous holder may have died with finals in its spool file.
                await self._recover_orphans()
            handle = _RoomHandle(lease)
            self.rooms[lease.job_id] = handle
            handle.task = asyncio.get_running_loop().create_task(
                self._room(handle), name=f"room:{lease.session_slug}"
            )
            metrics.ACTIVE_ROOMS.set(len(self.rooms))

    async def _recover_orphans(self) -> None:
        async with self._recovering:
            try:
                await self.spool.recover_orphans()
            except (OSError, ValueError):
                logger.exception("spool recovery failed")

    async def drain(self) -> None:
        """Leave every room cleanly, write usage and finals, give the leases back."""
        for handle in self.rooms.values():
            handle.draining = True
            handle.stop.set()
        tasks = [h.task for h in self.rooms.values() if h.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=self.settings.drain_timeout_s)
        if not await self.spool.flushed(self.settings.drain_timeout_s):
            logger.warning(
                "finals left in the spool at exit", extra={"pending": self.spool.pending}
            )

    # -- one room -------------------------------------------------------------------------------
    async def _room(self, handle: _RoomHandle) -> None:
        lease = handle.lease
        try:
            await self._room_inner(handle)
        except Exception:
            logger.exception("room failed", extra={"job_id": lease.job_id})
            with contextlib.suppress(StorageError):
                await self.repo.jobs.release_job(lease)
        finally:
            self.rooms.pop(lease.job_id, None)
            metrics.ACTIVE_ROOMS.set(len(self.rooms))
            self._export_tracks()

    def _export_tracks(self) -> None:
        """``transcriber_active_tracks``: the tracks of every room of this worker (each room's
        meter updates its own count; the gauge is their sum)."""
        metrics.ACTIVE_TRACKS.set(sum(h.live_tracks for h in self.rooms.values()))

    async def _room_inner(self, handle: _RoomHandle) -> None:
        lease = handle.lease
        if not ROOM_NAME.match(lease.session_slug):
            logger.error("job rejected: malformed room name", extra={"job_id": lease.job_id})
            await self.repo.jobs.finish_job(lease, reason="invalid_room_name")
            return
        session = await self.repo.sessions.get_session_by_id(lease.session_id)
        if session is None:
            logger.error("job rejected: session not found", extra={"job_id": lease.job_id})
            await self.repo.jobs.finish_job(lease, reason="session_missing")
            return
        observer = StorageObserver(
            self.repo, self.spool, session, self.settings, self.engine.recognizer.model_name
        )
        room = RoomTranscriber(
            self.engine,
            observer,
            RoomOptions(
                empty_timeout_s=self.settings.room_empty_timeout_s,
                max_tracks=self.settings.room_max_tracks,
                frame_ms=self.settings.audio_frame_ms,
                drain_timeout_s=self.settings.drain_timeout_s,
            ),
        )
        async with asyncio.TaskGroup() as tg:
            keep = tg.create_task(self._keep_lease(handle), name=f"lease:{lease.job_id}")
            meter = tg.create_task(
                self._meter(room, observer, handle), name=f"usage:{lease.job_id}"
            )
            reason = await self._join(room, handle, self.settings.livekit_connect_attempts)
            while reason is EndReason.DISCONNECTED and await self._session_live(handle):
                # LiveKit went away (a crash, a restart, a network cut) and the SDK gave up:
                # the meeting goes on, so keep trying until it is back or the session ends.
                metrics.LIVEKIT_REJOINS.inc()
                logger.warning("livekit connection lost; rejoining", extra={"job_id": lease.job_id})
                reason = await self._join(room, handle, attempts=None)
            keep.cancel()
            meter.cancel()
        await observer.checkpoint(room.usage)  # the last word on usage
        await self._end_job(handle, reason)

    async def _join(
        self, room: RoomTranscriber, handle: _RoomHandle, attempts: int | None
    ) -> EndReason | None:
        """Connect with backoff; None if LiveKit stayed unreachable for ``attempts`` tries
        (None: until the job stops)."""
        token = agent_token(self.settings, handle.lease.session_slug)
        delay = 1.0
        attempt = 0
        while attempts is None or attempt < attempts:
            attempt += 1
            if handle.stop.is_set():
                return EndReason.STOPPED
            try:
                return await room.run(self.settings.livekit_url, token, handle.stop)
            except rtc.ConnectError as exc:
                metrics.LIVEKIT_CONNECT_FAILURES.inc()
                logger.warning(
                    "livekit connect failed",
                    extra={"attempt": attempt, "error": str(exc)[:200], "retry_in_s": delay},
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(handle.stop.wait(), delay)
            # At most 2 s between tries (a refused connection costs little): captions resume within
            # seconds of LiveKit's return.
            delay = min(MAX_RETRY_DELAY_S, delay * 2)
        logger.error("livekit unreachable; job released", extra={"job_id": handle.lease.job_id})
        return None

    async def _session_live(self, handle: _RoomHandle) -> bool:
        """Whether the room is worth rejoining: the job still ours and its session not over."""
        if handle.stop.is_set():
            return False
        try:
            session = await self.repo.sessions.get_session_by_id(handle.lease.session_id)
        except StorageError:
            return True  # the database is away too: keep the meeting's captions going
        return session is not None and session.status in (SessionStatus.CREATED, SessionStatus.LIVE)

    async def _end_job(self, handle: _RoomHandle, reason: EndReason | None) -> None:
        lease = handle.lease
        with contextlib.suppress(StorageError):
            if handle.lost:
                return  # another worker holds it, or the job was stopped
            if reason is None or handle.draining:
                await self.repo.jobs.release_job(lease)
            elif reason is EndReason.STOPPED:
                await self.repo.jobs.finish_job(lease, reason="stopped")
            else:
                await self.repo.jobs.finish_job(lease, reason=reason.value)

    async def _keep_lease(self, handle: _RoomHandle) -> None:
        interval = self.settings.job_lease_s / 3
        while True:
            await asyncio.sleep(interval)
            try:
                alive = await self.repo.jobs.heartbeat(handle.lease, lease_for=self._lease_for)
            except StorageError:
                logger.warning("heartbeat failed", extra={"job_id": handle.lease.job_id})
                continue
            if not alive:
                logger.info(
                    "lease lost or job stopped; leaving", extra={"job_id": handle.lease.job_id}
                )
                handle.lost = True
                handle.stop.set()
                return

    async def _meter(
        self, room: RoomTranscriber, observer: StorageObserver, handle: _RoomHandle
    ) -> None:
        while True:
            await asyncio.sleep(self.settings.usage_checkpoint_s)
            await observer.checkpoint(room.usage)
            handle.live_tracks = sum(1 for u in room.usage.values() if u.live is not None)
            self._export_tracks()
            metrics.SPOOL_PENDING.set(self.spool.pending)
            scheduler = self.engine.scheduler
            metrics.PARTIALS_DROPPED.set(scheduler.stats.partials_dropped)
            metrics.DECODE_QUEUE.labels(kind="final").set(scheduler.pending_finals)
            metrics.DECODE_QUEUE.labels(kind="partial").set(scheduler.pending_partials)
