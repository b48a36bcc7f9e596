"""Live speaker labels inside one track: who of the people on one microphone said each caption.

    TrackPipeline._feed --samples--> TrackDiarizer.push_audio (cheap: cuts ~2 s blocks)
        --block--> the worker's diarization executor (one thread) --turns--> TrackDiarizer
    TrackPipeline._emit: a final waits (at most ``max_wait_ms``) until the turns cover its end,
        then ``attribute`` splits it where the speaker changes; a partial takes the latest
        known speaker.

:class:`LiveDiarization` is the worker's: one executor thread and one set of models (loaded on
the first block any track sends, shared by all tracks; each track keeps its own clustering
state). Cost is bounded per track: a block that finds ``max_backlog_blocks`` of the same track
still waiting is not diarized (``transcriber_diarization_blocks_skipped_total``); the stream's
times go on past the gap. Nothing here queues without bound.

Modes (the session's, overridden per participant by the ``transcriber.diarization`` attribute
the host app sets on the LiveKit participant): ``off`` builds nothing and imports no torch;
``on`` labels from the first turn; ``auto`` runs the diarizer but shows labels only once two
voices have each spoken ``auto_min_speech_s`` (then for the rest of the track). Captions keep
the participant's label when the ``diarization`` extra is missing (warned once per worker),
when the track is too short or silent to have turns, and when the diarizer fails (each failure
counted in ``transcriber_diarization_errors_total`` and logged without text; the captions go on).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np

from bot import metrics
from bot.pipeline.diarize import SpeakerTurn, attribute_captions, speaker_at
from bot.pipeline.types import SAMPLE_RATE_HZ, Caption
from bot.pipeline.vad import Float32Array
from core.errors import DiarizationError, ModelUnavailableError

logger = logging.getLogger("bot.pipeline")

DiarizationMode = Literal["off", "on", "auto"]
MODES: tuple[DiarizationMode, ...] = ("off", "on", "auto")
# The LiveKit participant attribute a host app sets to override the session's mode for one
# participant (e.g. "on" for a meeting-room system, "off" for a headset).
PARTICIPANT_ATTRIBUTE = "transcriber.diarization"
# Turns older than this behind the newest audio are not needed to attribute captions.
_KEEP_TURNS_MS = 60_000


def diarization_mode(session_mode: str, participant_mode: str | None) -> DiarizationMode:
    """The track's mode: the participant's attribute when it names a mode, else the session's
    (an unknown value counts as unset; an unknown session value as ``off``)."""
    for value in (participant_mode, session_mode):
        mode = (value or "").strip().lower()
        for known in MODES:
            if mode == known:
                return known
    return "off"


class BlockDiarizer(Protocol):
    """What a track needs of :class:`bot.pipeline.diarize.LiveDiarizer` (called on the
    executor thread only)."""

    def push(self, block: Float32Array) -> list[SpeakerTurn]: ...

    def skip(self, samples: int) -> None: ...


@dataclass(frozen=True, slots=True)
class DiarizationOptions:
    block_ms: int = 2000
    # Blocks of one track waiting for the executor; one more is skipped, not queued.
    max_backlog_blocks: int = 4
    # How long a final caption waits for the diarizer to cover its end.
    max_wait_ms: int = 2500
    # ``auto``: seconds of speech each of two voices needs before labels show.
    auto_min_speech_s: float = 3.0
    threads: int = 1


class LiveDiarization:
    """The worker's live diarization: one executor thread, models loaded once on first use.

    ``factory`` builds a track's diarizer on the executor thread (default: a ``LiveDiarizer``
    on the shared models; tests pass fakes)."""

    def __init__(
        self,
        options: DiarizationOptions | None = None,
        *,
        factory: Callable[[], BlockDiarizer] | None = None,
    ) -> None:
        self.options = options or DiarizationOptions()
        self._factory = factory or self._live_diarizer
        self._available: bool | None = True if factory is not None else None
        self._executor: ThreadPoolExecutor | None = None
        self._models: object | None = None
        self._loading: Future[None] | None = None
        self._warned = False

    @property
    def available(self) -> bool:
        if self._available is None:
            from bot.pipeline.diarize import diarization_available

            self._available = diarization_available()
        return self._available

    def open_track(self, mode: DiarizationMode, track_sid: str) -> TrackDiarizer | None:
        """A diarizer for one track, or None: mode ``off``, or the extra is missing."""
        if mode == "off":
            return None
        if not self.available:
            self.unavailable("the 'diarization' extra is not installed")
            return None
        self.preload()
        assert self._executor is not None
        return TrackDiarizer(self, self._executor, mode, track_sid)

    def preload(self) -> Future[None] | None:
        """Start loading the models now (on the executor), not at a track's first block: they
        take ~10 s (20 s on a busy 2-core machine), and a track's blocks wait behind them.
        ``DIARIZATION_PRELOAD`` calls it when the worker starts (and waits for it before it
        says it is ready); else the first diarized track does. None: nothing to load."""
        if self._executor is None:
            # one thread: the torch models are shared, and one track's blocks run in order
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="diarize")
        if self._loading is None and self._factory == self._live_diarizer and self.available:
            self._loading = self._executor.submit(self._load_models)
        return self._loading

    def _load_models(self) -> None:  # on the executor thread
        from bot.pipeline.diarize import LiveModels

        try:
            if self._models is None:
                self._models = LiveModels(threads=self.options.threads)
        except ModelUnavailableError:
            pass  # the first block meets it again and turns diarization off

    def unavailable(self, reason: str) -> None:
        """Turn diarization off for this worker (the models cannot load); warn once."""
        self._available = False
        if not self._warned:
            self._warned = True
            logger.warning(
                "speaker diarization unavailable; captions keep participant labels",
                extra={"reason": reason},
            )

    def _live_diarizer(self) -> BlockDiarizer:  # on the executor thread
        from bot.pipeline.diarize import LiveDiarizer, LiveModels

        if self._models is None:
            self._models = LiveModels(threads=self.options.threads)
        assert isinstance(self._models, LiveModels)
        return LiveDiarizer(models=self._models)

    def build(self) -> BlockDiarizer:
        return self._factory()

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None


@dataclass(slots=True)
class _Block:
    start_sample: int
    submitted: bool  # False: skipped under load


@dataclass(slots=True)
class TrackStats:
    blocks: int = 0
    skipped_blocks: int = 0
    errors: int = 0
    speech_ms: dict[str, int] = field(default_factory=dict)


class TrackDiarizer:
    """One track's live diarization: audio in (``push_audio``), labels out (``attribute``).

    Runs on the event loop; the model work goes to the worker's executor. Sample 0 is the
    first sample the track's speech stream got, so caption times and turn times agree."""

    def __init__(
        self,
        service: LiveDiarization,
        executor: ThreadPoolExecutor,
        mode: DiarizationMode,
        track_sid: str,
    ) -> None:
        self.mode = mode
        self._service = service
        self._executor = executor
        self._track_sid = track_sid
        options = service.options
        self._block = max(1, options.block_ms * SAMPLE_RATE_HZ // 1000)
        self._max_backlog = options.max_backlog_blocks
        self._auto_min_ms = round(options.auto_min_speech_s * 1000)
        self._chunks: list[Float32Array] = []
        self._buffered = 0
        self._received = 0  # samples cut into blocks so far
        self._covered = 0  # samples diarized or given up on, in order
        self._blocks: deque[_Block] = deque()  # not yet covered, in stream order
        self._pending = 0  # blocks with the executor
        self._gap = 0  # samples skipped since the last submitted block
        self._diarizer: BlockDiarizer | None = None
        self._failed = False
        self._ended = False
        self._skip_logged = False
        self._changed = asyncio.Event()
        self._labels_on = mode == "on"
        self.turns: list[SpeakerTurn] = []
        self.stats = TrackStats()

    # -- audio in ---------------------------------------------------------------------------
    def push_audio(self, samples: Float32Array) -> None:
        """Tap a frame of the track's audio (cheap; whole blocks go to the executor)."""
        self._chunks.append(samples)
        self._buffered += len(samples)
        while self._buffered >= self._block:
            audio = np.concatenate(self._chunks)
            self._submit(audio[: self._block])
            rest = audio[self._block :]
            self._chunks = [rest] if len(rest) else []
            self._buffered = len(rest)

    def end_input(self) -> None:
        """The track ended: diarize what is left (a short tail too) and let waiters go."""
        if self._buffered:
            self._submit(np.concatenate(self._chunks))
            self._chunks, self._buffered = [], 0
        self._ended = True
        self._changed.set()

    def _submit(self, block: Float32Array) -> None:
        start = self._received
        self._received += len(block)
        self.stats.blocks += 1
        if self._failed:
            self._covered = self._received
            self._changed.set()
            return
        if self._pending >= self._max_backlog:
            self.stats.skipped_blocks += 1
            metrics.DIARIZATION_BLOCKS_SKIPPED.inc()
            if not self._skip_logged:  # once per track; the counter has the rest
                self._skip_logged = True
                logger.warning(
                    "live diarization behind; blocks skipped",
                    extra={"track_sid": self._track_sid, "backlog_blocks": self._pending},
                )
            self._gap += len(block)
            self._blocks.append(_Block(start, submitted=False))
            return
        gap, self._gap = self._gap, 0
        self._pending += 1
        self._blocks.append(_Block(start, submitted=True))
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._executor, self._work, block, gap)
        future.add_done_callback(self._done)

    def _work(self, block: Float32Array, gap: int) -> list[SpeakerTurn]:  # executor thread
        if self._diarizer is None:
            self._diarizer = self._service.build()
        if gap:
            self._diarizer.skip(gap)
        return self._diarizer.push(block)

    def _done(self, future: asyncio.Future[list[SpeakerTurn]]) -> None:  # on the loop
        self._pending -= 1
        if future.cancelled():
            self._failed = True
        elif (exc := future.exception()) is not None:
            if isinstance(exc, ModelUnavailableError):
                self._failed = True
                self._service.unavailable(type(exc).__name__)
            else:
                self.stats.errors += 1
                metrics.DIARIZATION_ERRORS.inc()
                kind = exc.__cause__ if isinstance(exc, DiarizationError) else exc
                logger.warning(
                    "live diarization failed; block keeps participant labels",
                    extra={"track_sid": self._track_sid, "error_type": type(kind).__name__},
                )
        else:
            self._add_turns(future.result())
        # this block is covered, and so are the skipped blocks right behind it
        self._blocks.popleft()
        while self._blocks and not self._blocks[0].submitted:
            self._blocks.popleft()
        self._covered = self._blocks[0].start_sample if self._blocks else self._received
        if self._failed:
            self._covered = self._received
        self._changed.set()

    def _add_turns(self, turns: list[SpeakerTurn]) -> None:
        self.turns.extend(turns)
        for turn in turns:
            ms = self.stats.speech_ms
            ms[turn.speaker] = ms.get(turn.speaker, 0) + turn.end_ms - turn.start_ms
        if not self._labels_on and self.mode == "auto":
            voices = [ms for ms in self.stats.speech_ms.values() if ms >= self._auto_min_ms]
            self._labels_on = len(voices) >= 2
        if self.turns:
            keep_from = self.turns[-1].end_ms - _KEEP_TURNS_MS
            if self.turns[0].end_ms < keep_from:
                self.turns = [t for t in self.turns if t.end_ms >= keep_from]

    # -- labels out -------------------------------------------------------------------------
    @property
    def covered_ms(self) -> int:
        return self._covered * 1000 // SAMPLE_RATE_HZ

    async def wait_covered(self, end_ms: int, timeout_s: float) -> bool:
        """Until the turns cover ``end_ms`` (True), or ``timeout_s`` passed, or nothing more
        will come (False)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self.covered_ms < end_ms:
            if self._failed or (self._ended and not self._pending):
                return False
            remaining = deadline - loop.time()
            self._changed.clear()
            try:
                if remaining <= 0:
                    raise TimeoutError
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                metrics.DIARIZATION_LATE_FINALS.inc()
                return False
        return True

    @property
    def labelling(self) -> bool:
        """Whether captions show in-track labels now (``auto``: once two voices spoke)."""
        return self._labels_on and not self._failed

    def attribute(self, caption: Caption) -> list[tuple[Caption, str | None]]:
        """A final caption with its in-track speaker (None: the participant's label), split in
        two or more where the speaker changes between words."""
        if not self.labelling:
            return [(caption, None)]
        return [(a.caption, a.speaker) for a in attribute_captions([caption], self.turns)]

    def partial_speaker(self, caption: Caption) -> str | None:
        """The latest known speaker of a partial caption (None: the participant's label)."""
        if not self.labelling:
            return None
        return speaker_at(caption.start_ms, caption.end_ms, self.turns)
