"""The worker: claims transcription jobs from Postgres and runs one ``RoomAgent`` per job.

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
from datetime import timedelta

from bot import metrics
from bot.config import BotSettings
from bot.engines import SpeechEngines
from bot.final_diarization import FinalDiarization
from bot.livekit.presence import LeaveReason
from bot.livekit.room import RoomAgent, RoomOptions
from bot.livekit.token import agent_token
from bot.pipeline.diarize import OfflineDiarizer, diarization_available
from bot.pipeline.engine import SpeechEngine
from bot.pipeline.track_diarization import LiveDiarization
from bot.pipeline.usage import UsageMeter
from bot.recording import CaptionRecorder, SessionRecorder
from bot.spool import FinalSpool
from bot.track_recording import TrackRecordings
from bot.transcription import RoomTranscription
from core.errors import StorageError
from core.logs import error_fields
from store.enums import SessionStatus
from store.notify import JobListener
from store.records import JobLease, JobNotification
from store.stores import Store

logger = logging.getLogger("bot.worker")

# LiveKit room names we accept: the API's session slugs, and nothing that could smuggle
# control characters or paths into logs and URLs.
ROOM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


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
        *,
        engines: SpeechEngines | None = None,
        diarization: LiveDiarization | None = None,
    ) -> None:
        self.settings = settings
        # the worker's live diarization, shared by its rooms (models loaded on first use)
        self.diarization = diarization
        self.repo = repo
        self.engine = engine
        # the default engine and the models sessions may choose (ASR_MODELS)
        self.engines = engines
        self.spool = spool
        self.database_url = database_url
        self.rooms: dict[int, _RoomHandle] = {}
        self._ready = False
        metrics.WORKER_READY.set(0)
        self._lease_for = timedelta(seconds=settings.job_lease_s)
        self._recovering = asyncio.Lock()
        # after-meeting diarization: diarized tracks' audio kept, relabelled after the meeting
        self.recordings: TrackRecordings | None = None
        self.final_diarization: FinalDiarization | None = None
        if settings.final_diarization and diarization_available():
            self.recordings = TrackRecordings(
                repo,
                settings.recordings_dir,
                worker_id=settings.worker_id,
                fsync_s=settings.recording_fsync_s,
            )
            self.final_diarization = FinalDiarization(
                repo,
                settings.recordings_dir,
                OfflineDiarizer,
                stale_s=settings.final_diarization_stale_s,
            )
        self._pass_wake = asyncio.Event()

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
        passes = None
        diarization = self.final_diarization
        if diarization is not None:
            passes = asyncio.get_running_loop().create_task(
                diarization.run(stop, self._pass_wake, self.settings.final_diarization_poll_s),
                name="final-diarization",
            )
        try:
            await self._run(stop)
        finally:
            if diarization is not None and passes is not None:
                passes.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await passes
                diarization.close()

    async def _run(self, stop: asyncio.Event) -> None:
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
            except Exception as exc:  # the spool folder unreadable, say: start anyway
                logger.error("spool recovery failed", extra=error_fields(exc))

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
        left = False
        try:
            await self._room_inner(handle)
            left = True
        except Exception as exc:
            # the type and frames only: a message may quote SQL parameters, identities or text
            logger.error("room failed", extra={"job_id": lease.job_id, **error_fields(exc)})
            with contextlib.suppress(StorageError):
                await self.repo.jobs.release_job(lease)
        finally:
            self.rooms.pop(lease.job_id, None)
            metrics.ACTIVE_ROOMS.set(len(self.rooms))
            self._export_tracks()
        if left:
            # after the room's slot is free: waiting for the spool holds no room or lease
            await self._report_finals_stored(handle)
            self._pass_wake.set()  # its recordings may be ready for the after-meeting pass

    def _export_tracks(self) -> None:
        """``transcriber_active_tracks``: the tracks of every room of this worker (each room's
        checkpoint loop updates its own count; the gauge is their sum). With it
        ``transcriber_speaking_streams``: the engine's streams inside an utterance now."""
        metrics.ACTIVE_TRACKS.set(sum(h.live_tracks for h in self.rooms.values()))
        metrics.SPEAKING_STREAMS.set(sum(e.speaking_streams for e in self._loaded_engines()))

    def _loaded_engines(self) -> list[SpeechEngine]:
        """The default engine and those loaded for sessions' models since."""
        return self.engines.loaded if self.engines is not None else [self.engine]

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
        model = self.engine.recognizer.model_name
        meter = UsageMeter()
        recorder = SessionRecorder(self.repo, session, self.settings, model, meter)
        transcription = RoomTranscription(
            self.engines or SpeechEngines(self.engine),
            recorder,
            CaptionRecorder(self.spool, session, model),
            meter,
            dump_dir=self.settings.audio_dump_dir,
            recordings=self.recordings,
            diarization=self.diarization,
        )
        room = RoomAgent(
            transcription,
            RoomOptions(
                empty_timeout_s=self.settings.room_empty_timeout_s,
                first_join_timeout_s=self.settings.room_first_join_timeout_s,
                max_tracks=self.settings.room_max_tracks,
                frame_ms=self.settings.audio_frame_ms,
                drain_timeout_s=self.settings.drain_timeout_s,
            ),
        )
        async with asyncio.TaskGroup() as tg:
            keep = tg.create_task(self._keep_lease(handle), name=f"lease:{lease.job_id}")
            checkpoints = tg.create_task(
                self._meter(handle, recorder, meter), name=f"usage:{lease.job_id}"
            )
            reason = await self._join(room, handle, self.settings.livekit_connect_attempts)
            while reason is LeaveReason.DISCONNECTED and await self._session_live(handle):
                # LiveKit went away (a crash, a restart, a network cut) and the SDK gave up:
                # the meeting goes on, so keep trying until it is back or the session ends.
                metrics.LIVEKIT_REJOINS.inc()
                logger.warning("livekit connection lost; rejoining", extra={"job_id": lease.job_id})
                reason = await self._join(room, handle, attempts=None)
            keep.cancel()
            checkpoints.cancel()
        await recorder.checkpoint()  # the last word on usage
        await self._end_job(handle, reason)

    async def _join(
        self, room: RoomAgent, handle: _RoomHandle, attempts: int | None
    ) -> LeaveReason | None:
        """Join with retries; None if LiveKit stayed unreachable for ``attempts`` tries
        (None: until the job stops)."""
        token = agent_token(self.settings, handle.lease.session_slug)
        reason = await room.join(self.settings.livekit_url, token, handle.stop, attempts=attempts)
        if reason is None:
            logger.error("livekit unreachable; job released", extra={"job_id": handle.lease.job_id})
        return reason

    async def _session_live(self, handle: _RoomHandle) -> bool:
        """Whether the room is worth rejoining: the job still ours and its session not over."""
        if handle.stop.is_set():
            return False
        try:
            session = await self.repo.sessions.get_session_by_id(handle.lease.session_id)
        except StorageError:
            return True  # the database is away too: keep the meeting's captions going
        return session is not None and session.status in (SessionStatus.CREATED, SessionStatus.LIVE)

    async def _end_job(self, handle: _RoomHandle, reason: LeaveReason | None) -> None:
        lease = handle.lease
        with contextlib.suppress(StorageError):
            if handle.lost:
                return  # another worker holds it, or the job was stopped
            if reason is None or handle.draining:
                await self.repo.jobs.release_job(lease)
            elif reason is LeaveReason.STOPPED:
                await self.repo.jobs.finish_job(lease, reason="stopped")
            else:
                await self.repo.jobs.finish_job(lease, reason=reason.value)

    async def _report_finals_stored(self, handle: _RoomHandle) -> None:
        """Once the spool has stored every final of the room, say so on the job: an ended
        session's ``transcript.ready`` webhook waits for it. A spool still holding finals
        (the database away) reports nothing; the API's sweeper announces the transcript after
        ``WEBHOOK_TRANSCRIPT_READY_TIMEOUT_MINUTES``."""
        if not await self.spool.flushed(self.settings.drain_timeout_s):
            logger.warning("finals not stored yet", extra={"job_id": handle.lease.job_id})
            return
        try:
            await self.repo.jobs.finals_stored(handle.lease)
        except StorageError:
            logger.warning("finals report failed", extra={"job_id": handle.lease.job_id})

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
        self, handle: _RoomHandle, recorder: SessionRecorder, meter: UsageMeter
    ) -> None:
        while True:
            await asyncio.sleep(self.settings.usage_checkpoint_s)
            await recorder.checkpoint()
            handle.live_tracks = meter.live_tracks
            self._export_tracks()
            metrics.SPOOL_PENDING.set(self.spool.pending)
            schedulers = [e.scheduler for e in self._loaded_engines()]
            metrics.PARTIALS_DROPPED.set(sum(s.stats.partials_dropped for s in schedulers))
            metrics.DECODE_QUEUE.labels(kind="final").set(sum(s.pending_finals for s in schedulers))
            metrics.DECODE_QUEUE.labels(kind="partial").set(
                sum(s.pending_partials for s in schedulers)
            )
