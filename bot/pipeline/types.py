"""The values that flow through the speech pipeline: plain, immutable dataclasses."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

SAMPLE_RATE_HZ = 16_000


@dataclass(frozen=True, slots=True)
class Word:
    """One recognised word, with times in ms relative to the start of the stream."""

    text: str
    start_ms: int
    end_ms: int
    probability: float


@dataclass(frozen=True, slots=True)
class Caption:
    """A partial or final caption of one utterance on one audio stream.

    ``text`` is always the full text of the utterance so far (LiveKit's transcription format
    resends the whole segment with every partial). ``stable_text`` is the prefix that consecutive
    decodes agreed on: it never changes between partials of one utterance. A final caption's
    ``stable_text`` equals its ``text``.
    """

    utterance_id: str
    text: str
    is_final: bool
    start_ms: int
    end_ms: int
    language: str
    confidence: float
    stable_text: str = ""
    words: tuple[Word, ...] = field(default=())

    @property
    def word_count(self) -> int:
        return len(self.text.split())


@dataclass(frozen=True, slots=True)
class Speaker:
    """Who a track's captions belong to."""

    identity: str
    name: str
    track_sid: str
    label: str  # what to show: the name, or a diarization label when one mic has several people
    # the in-track speaker of a diarized track ("Speaker 2"); None when not diarized
    in_track: str | None = None


@dataclass(frozen=True, slots=True)
class SpokenCaption:
    """A caption of one track, as the sinks receive it."""

    caption: Caption
    speaker: Speaker
    # Wall-clock time of the stream's first sample: caption times are offsets from it.
    stream_started_at: datetime
    model: str = ""  # the ASR model that decoded it ("" when unknown)


@dataclass(frozen=True, slots=True)
class TrackSettings:
    """A track's speech settings, fixed when its pipeline starts (from its session's).

    ``language`` is a Whisper language code (None: detected per utterance); ``hotwords`` and
    ``initial_prompt`` prompt the decoder (None: the worker's configured ones); ``model`` names
    the Whisper model that decodes the track. ``diarization`` is the session's mode, carried for
    the diarization stage: today every mode means ``off``, i.e. each segment is labelled with
    its participant (``Speaker.label``).
    """

    model: str
    language: str | None = None
    hotwords: str | None = None
    initial_prompt: str | None = None
    diarization: Literal["off", "on", "auto"] = "off"
