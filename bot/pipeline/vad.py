"""Voice activity detection (Silero, ONNX) and the utterance segmenter built on it.

``SileroVad`` holds the one ONNX session of the process; each stream gets its own
``VadStream`` (recurrent state + 64-sample context). ``Segmenter`` is a pure, synchronous
state machine: push 16 kHz float32 samples in, get utterance events out. It keeps
``pre_roll_ms`` of audio before speech starts (so the first syllable is not clipped), ends an
utterance after ``min_silence_ms`` of silence, drops blips shorter than ``min_speech_ms``, and
cuts utterances longer than ``max_utterance_s`` at the quietest recent window.

Once the silence after speech covers ``post_roll_ms``, the utterance's audio is complete if it
ends there: the segmenter says so (``UtterancePaused``, with exactly the audio ``UtteranceEnded``
will carry) and, if speech comes back before ``min_silence_ms``, takes it back
(``UtteranceResumed``). A consumer can start the final decode at the pause and have it ready
when the end is certain.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import numpy as np
import numpy.typing as npt

from bot.pipeline.types import SAMPLE_RATE_HZ
from core.errors import ModelUnavailableError

WINDOW_SAMPLES = 512  # 32 ms at 16 kHz: Silero's window
CONTEXT_SAMPLES = 64
WINDOW_MS = WINDOW_SAMPLES * 1000 // SAMPLE_RATE_HZ

Float32Array = npt.NDArray[np.float32]


def silero_model_path() -> Path:
    """The ONNX file in the ``silero-vad`` wheel (found without importing it: that needs torch)."""
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailableError(
            "VAD model missing: install silero-vad (pip install --no-deps silero-vad==6.2.3)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "silero_vad.onnx"
    if not path.is_file():
        raise ModelUnavailableError(f"VAD model missing: {path} not found")
    return path


class SileroVad:
    """The process-wide Silero VAD session. Thread-safe; streams keep their own state."""

    def __init__(self, model_path: Path | None = None, *, threads: int = 1) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self._session = ort.InferenceSession(
            str(model_path or silero_model_path()),
            sess_options=options,
            providers=["CPUExecutionProvider"],
        )
        self._sr = np.array(SAMPLE_RATE_HZ, dtype=np.int64)

    def stream(self) -> VadStream:
        return VadStream(self)

    def _run(
        self, window_with_context: Float32Array, state: Float32Array
    ) -> tuple[float, Float32Array]:
        out, new_state = self._session.run(
            None, {"input": window_with_context[None, :], "state": state, "sr": self._sr}
        )
        return float(out[0, 0]), new_state


class VadStream:
    """Speech probability for consecutive 512-sample windows of one stream."""

    def __init__(self, vad: SileroVad) -> None:
        self._vad = vad
        self._state = np.zeros((2, 1, 128), dtype=np.float32)
        self._context = np.zeros(CONTEXT_SAMPLES, dtype=np.float32)

    def probability(self, window: Float32Array) -> float:
        if window.shape != (WINDOW_SAMPLES,):
            raise ValueError(f"VAD window must have {WINDOW_SAMPLES} samples")
        x = np.concatenate([self._context, window])
        prob, self._state = self._vad._run(x, self._state)
        self._context = window[-CONTEXT_SAMPLES:]
        return prob


@dataclass(frozen=True, slots=True)
class SegmenterOptions:
    threshold: float = 0.5
    # Silence is declared below ``threshold - hysteresis`` (Silero's recommended neg threshold).
    hysteresis: float = 0.15
    pre_roll_ms: int = 300
    min_silence_ms: int = 400
    min_speech_ms: int = 250
    max_utterance_s: float = 15.0
    # Past ``soft_max_utterance_s`` a shorter pause (``soft_min_silence_ms``) ends the utterance,
    # so long monologues are split at breaths as they happen instead of being cut late at
    # ``max_utterance_s``.
    soft_max_utterance_s: float = 8.0
    soft_min_silence_ms: int = 160
    # An utterance shorter than ``short_utterance_s`` of audio (pre-roll included) ends only
    # after ``short_min_silence_ms`` of silence, so a phrase of a word or two is decoded with
    # the speech around it: decoded alone it loses words the same audio keeps in context.
    # Through Opus, JFK's 1.5 s "Ask not" alone came out "is not." / "S NOT" (base / tiny.en),
    # and "And so my fellow Americans" cut 96 ms after the VAD's end "... america"; merged
    # across JFK's ~1.0 s pauses (1.02-1.28 s after the room path's jitter), both come out
    # right (tests/integration/engine/test_room_audio.py). 0 turns it off (the bare default
    # here; the product's, ``VAD_SHORT_UTTERANCE_S``, is 3 s).
    short_utterance_s: float = 0.0
    short_min_silence_ms: int = 1500
    # Audio kept after the last speech window, so word endings are not clipped.
    post_roll_ms: int = 96
    # At max length, cut at the quietest window of the last ``cut_search_s`` seconds.
    cut_search_s: float = 3.0
    # Windows whose peak is below this (-80 dBFS: digital silence, a muted or DTX track) are
    # silence without running the model: a connected silent track then costs next to nothing.
    energy_floor: float = 1e-4

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold < 1.0:
            raise ValueError("VAD threshold must be between 0 and 1")
        if self.min_silence_ms < WINDOW_MS or self.max_utterance_s < 1.0:
            raise ValueError("VAD min silence must be >= 32 ms and max utterance >= 1 s")
        if self.soft_min_silence_ms < WINDOW_MS or self.short_min_silence_ms < WINDOW_MS:
            raise ValueError("VAD soft min silence must be >= 32 ms")
        if self.short_utterance_s < 0:
            raise ValueError("VAD short utterance length must not be negative")
        if self.pre_roll_ms < 0 or self.min_speech_ms < 0 or self.post_roll_ms < 0:
            raise ValueError("VAD durations must not be negative")


class EndReason(Enum):
    SILENCE = "silence"
    MAX_LENGTH = "max_length"
    PHRASE = "phrase"  # cut at a pause inside speech by the consumer (``Segmenter.split``)
    END_OF_STREAM = "end_of_stream"


@dataclass(frozen=True, slots=True)
class UtteranceStarted:
    index: int
    start_sample: int


@dataclass(frozen=True, slots=True)
class UtteranceEnded:
    """An utterance is complete. ``audio`` spans ``start_sample``..``end_sample`` of the stream."""

    index: int
    start_sample: int
    end_sample: int
    # Last sample the VAD judged to be speech (the "end of speech" latencies are measured from).
    speech_end_sample: int
    audio: Float32Array
    reason: EndReason


@dataclass(frozen=True, slots=True)
class UtterancePaused:
    """Silence has covered the post-roll: if the utterance ends in this pause, it will be
    ``audio`` (``start_sample``..``end_sample``), exactly as ``UtteranceEnded`` will carry it."""

    index: int
    start_sample: int
    end_sample: int
    audio: Float32Array


@dataclass(frozen=True, slots=True)
class UtteranceResumed:
    """Speech came back before the pause ended the utterance: the last pause was not its end."""

    index: int
    # How long the pause was: its silent windows (below ``threshold - hysteresis``).
    pause_ms: int = 0


@dataclass(frozen=True, slots=True)
class UtteranceDiscarded:
    """A speech blip shorter than ``min_speech_ms``: no caption must come of it."""

    index: int


SegmentEvent = (
    UtteranceStarted | UtteranceEnded | UtteranceDiscarded | UtterancePaused | UtteranceResumed
)


class Segmenter:
    """Splits one stream into utterances. Pure and synchronous; one per stream."""

    def __init__(self, vad: VadStream, options: SegmenterOptions | None = None) -> None:
        self._vad = vad
        self.options = options or SegmenterOptions()
        o = self.options
        self._pre_roll = o.pre_roll_ms * SAMPLE_RATE_HZ // 1000
        self._min_silence_windows = max(1, o.min_silence_ms // WINDOW_MS)
        self._soft_silence_windows = max(
            1, min(o.soft_min_silence_ms, o.min_silence_ms) // WINDOW_MS
        )
        self._soft_max_samples = int(o.soft_max_utterance_s * SAMPLE_RATE_HZ)
        self._short_silence_windows = max(
            self._min_silence_windows, o.short_min_silence_ms // WINDOW_MS
        )
        self._short_samples = int(o.short_utterance_s * SAMPLE_RATE_HZ)
        self._min_speech_samples = o.min_speech_ms * SAMPLE_RATE_HZ // 1000
        self._max_samples = int(o.max_utterance_s * SAMPLE_RATE_HZ)
        self._post_roll = o.post_roll_ms * SAMPLE_RATE_HZ // 1000
        # Silent windows after which the audio of an utterance ending there is complete.
        self._pause_windows = max(1, -(-self._post_roll // WINDOW_SAMPLES))
        self._cut_search_windows = max(1, int(o.cut_search_s * 1000) // WINDOW_MS)

        self._pending = np.zeros(0, dtype=np.float32)  # samples not yet a full window
        self._history: list[Float32Array] = []  # recent windows for pre-roll
        self._history_samples = 0
        self._samples_seen = 0  # samples consumed into windows

        self._index = -1
        self._in_speech = False
        self._buffer: list[Float32Array] = []
        self._probs: list[float] = []  # one per window of the current utterance
        self._start_sample = 0
        self._speech_samples = 0
        self._silence_windows = 0
        self._last_speech_end = 0
        self._paused = False  # an UtterancePaused stands for the current pause

    # -- public API -------------------------------------------------------------------------
    @property
    def in_speech(self) -> bool:
        return self._in_speech

    @property
    def in_pause(self) -> bool:
        """An utterance is open and its latest window was silent: it may be ending."""
        return self._in_speech and self._silence_windows > 0

    @property
    def pause_ms(self) -> int:
        """How long the open utterance's current pause has lasted (its silent windows)."""
        return self._silence_windows * WINDOW_MS if self._in_speech else 0

    @property
    def awaits_long_pause(self) -> bool:
        """The open utterance is short: only ``short_min_silence_ms`` of silence ends it."""
        return (
            self._in_speech
            and self._silence_windows_needed() > self._min_silence_windows
            and self._short_silence_windows > self._min_silence_windows
        )

    @property
    def samples_seen(self) -> int:
        return self._samples_seen + len(self._pending)

    @property
    def utterance_index(self) -> int:
        return self._index

    @property
    def utterance_start_sample(self) -> int:
        return self._start_sample

    def utterance_audio(self) -> Float32Array:
        """The current utterance's audio so far (a copy), empty outside speech."""
        if not self._in_speech:
            return np.zeros(0, dtype=np.float32)
        return np.concatenate(self._buffer) if self._buffer else np.zeros(0, dtype=np.float32)

    def utterance_samples(self) -> int:
        return sum(len(b) for b in self._buffer) if self._in_speech else 0

    def push(self, samples: Float32Array) -> list[SegmentEvent]:
        if samples.dtype != np.float32:
            samples = samples.astype(np.float32)
        data = np.concatenate([self._pending, samples]) if len(self._pending) else samples
        events: list[SegmentEvent] = []
        n_windows = len(data) // WINDOW_SAMPLES
        floor = self.options.energy_floor
        for i in range(n_windows):
            window = data[i * WINDOW_SAMPLES : (i + 1) * WINDOW_SAMPLES]
            silent = floor > 0 and float(np.max(np.abs(window))) < floor
            prob = 0.0 if silent else self._vad.probability(window)
            events.extend(self._on_window(window, prob))
        self._pending = data[n_windows * WINDOW_SAMPLES :].copy()
        return events

    def flush(self) -> list[SegmentEvent]:
        """End of stream: close the open utterance, if any."""
        events: list[SegmentEvent] = []
        if self._in_speech:
            if len(self._pending):
                self._buffer.append(self._pending)
                self._samples_seen += len(self._pending)
                self._pending = np.zeros(0, dtype=np.float32)
            events.append(self._end(EndReason.END_OF_STREAM))
        return events

    # -- state machine ------------------------------------------------------------------------
    def _on_window(self, window: Float32Array, prob: float) -> list[SegmentEvent]:
        o = self.options
        window_start = self._samples_seen
        self._samples_seen += WINDOW_SAMPLES
        events: list[SegmentEvent] = []
        if not self._in_speech:
            if prob >= o.threshold:
                self._index += 1
                self._in_speech = True
                pre = self._pre_roll_audio()
                self._buffer = [pre, window] if len(pre) else [window]
                self._probs = [0.0] * (len(pre) // WINDOW_SAMPLES) + [prob]
                self._start_sample = window_start - len(pre)
                self._speech_samples = WINDOW_SAMPLES
                self._silence_windows = 0
                self._last_speech_end = self._samples_seen
                self._history.clear()
                self._history_samples = 0
                events.append(UtteranceStarted(self._index, self._start_sample))
            else:
                self._remember(window)
            return events

        self._buffer.append(window)
        self._probs.append(prob)
        if prob >= o.threshold - o.hysteresis:
            if prob >= o.threshold:
                self._speech_samples += WINDOW_SAMPLES
            pause_ms = self._silence_windows * WINDOW_MS
            self._silence_windows = 0
            self._last_speech_end = self._samples_seen
            if self._paused:
                self._paused = False
                events.append(UtteranceResumed(self._index, pause_ms))
        else:
            self._silence_windows += 1

        if self._silence_windows >= self._silence_windows_needed():
            events.append(self._end(EndReason.SILENCE))
        elif self.utterance_samples() >= self._max_samples:
            events.extend(self._cut_at_max_length())
        elif (
            not self._paused
            and self._silence_windows >= self._pause_windows
            and self._speech_samples >= self._min_speech_samples
        ):
            self._paused = True
            end_sample = self._last_speech_end + self._post_roll
            audio = np.concatenate(self._buffer)[: end_sample - self._start_sample]
            events.append(UtterancePaused(self._index, self._start_sample, end_sample, audio))
        return events

    def _silence_windows_needed(self) -> int:
        """Silent windows that end the current utterance."""
        n = self.utterance_samples()
        if n >= self._soft_max_samples:
            return self._soft_silence_windows
        if n - self._silence_windows * WINDOW_SAMPLES < self._short_samples:
            return self._short_silence_windows
        return self._min_silence_windows

    def _remember(self, window: Float32Array) -> None:
        self._history.append(window)
        self._history_samples += len(window)
        while self._history and self._history_samples - len(self._history[0]) >= self._pre_roll:
            self._history_samples -= len(self._history.pop(0))

    def _pre_roll_audio(self) -> Float32Array:
        if not self._history or self._pre_roll == 0:
            return np.zeros(0, dtype=np.float32)
        audio = np.concatenate(self._history)
        return audio[-self._pre_roll :]

    def _end(self, reason: EndReason) -> SegmentEvent:
        audio = np.concatenate(self._buffer)
        index = self._index
        start = self._start_sample
        speech_end = self._last_speech_end
        self._in_speech = False
        self._paused = False
        trailing = audio
        self._buffer, self._probs = [], []
        if self._speech_samples < self._min_speech_samples and reason is not EndReason.MAX_LENGTH:
            self._remember_tail(trailing)
            return UtteranceDiscarded(index)
        # Keep only ``post_roll`` of the trailing silence.
        end_sample = min(start + len(audio), speech_end + self._post_roll)
        kept = audio[: end_sample - start]
        self._remember_tail(audio[end_sample - start :])
        return UtteranceEnded(index, start, end_sample, speech_end, kept, reason)

    def _remember_tail(self, audio: Float32Array) -> None:
        """Trailing silence of an ended utterance becomes pre-roll for the next one."""
        self._history = [audio[-self._pre_roll :]] if len(audio) and self._pre_roll else []
        self._history_samples = sum(len(h) for h in self._history)

    def split(self, end_sample: int) -> list[SegmentEvent]:
        """End the open utterance at ``end_sample`` (a pause inside it) and go on with the rest
        as a new utterance: ``[UtteranceEnded(reason=PHRASE), UtteranceStarted]``, or nothing
        when ``end_sample`` is not strictly inside the open utterance or a pause is open."""
        cut = end_sample - self._start_sample
        if not self._in_speech or self._paused or not 0 < cut < self.utterance_samples():
            return []
        return self._split(cut, cut, EndReason.PHRASE)

    def quietest_window(self, lo_sample: int, hi_sample: int) -> tuple[int, float]:
        """The middle sample and speech probability of the open utterance's least speech-like
        window lying inside ``lo_sample``..``hi_sample``; ``(middle of the span, 1.0)`` when no
        whole window lies there. Where a phrase cut inside speech clips least."""
        n = len(self._probs)
        end = self._start_sample + self.utterance_samples()  # the newest window ends here
        best, best_prob = (lo_sample + hi_sample) // 2, 1.0
        for i in range(n):
            w_end = end - (n - 1 - i) * WINDOW_SAMPLES
            w_start = w_end - WINDOW_SAMPLES
            if w_start >= lo_sample and w_end <= hi_sample and self._probs[i] < best_prob:
                best, best_prob = w_start + WINDOW_SAMPLES // 2, self._probs[i]
        return best, best_prob

    def _cut_at_max_length(self) -> list[SegmentEvent]:
        """Close the utterance at the quietest recent window and carry the rest over."""
        probs = np.asarray(self._probs)
        search_from = max(1, len(probs) - self._cut_search_windows)
        cut_window = search_from + int(np.argmin(probs[search_from:]))
        cut = (cut_window + 1) * WINDOW_SAMPLES
        return self._split(cut, cut_window + 1, EndReason.MAX_LENGTH)

    def _split(self, cut: int, tail_window: int, reason: EndReason) -> list[SegmentEvent]:
        audio = np.concatenate(self._buffer)
        index, start = self._index, self._start_sample
        head, tail = audio[:cut], audio[cut:]
        if reason is EndReason.PHRASE:  # the buffer's windows end at the newest sample
            tail_window = max(0, len(self._probs) - len(tail) // WINDOW_SAMPLES)
        tail_probs = self._probs[tail_window:]
        speech_end = start + cut if reason is EndReason.MAX_LENGTH else self._phrase_speech_end(cut)
        ended = UtteranceEnded(index, start, start + cut, speech_end, head, reason)
        # The speech goes on: a new utterance starts right at the cut.
        self._index += 1
        self._start_sample = start + cut
        self._buffer = [tail] if len(tail) else []
        self._probs = list(tail_probs)
        self._speech_samples = sum(
            WINDOW_SAMPLES for p in tail_probs if p >= self.options.threshold
        )
        self._silence_windows = 0
        self._paused = False
        return [ended, UtteranceStarted(self._index, self._start_sample)]

    def _phrase_speech_end(self, cut: int) -> int:
        """The end of speech before a phrase cut: the cut less the post-roll it keeps."""
        return self._start_sample + max(0, cut - self._post_roll)
