"""The values that flow through the speech pipeline: plain, immutable dataclasses."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
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
    # the participant's own diarization mode (its ``transcriber.diarization`` attribute:
    # "off", "on" or "auto"), overriding the session's; None: the session's
    diarization: str | None = None

    def within(self, in_track: str | None) -> Speaker:
        """This participant as the in-track speaker ``in_track`` ("Room 4 · Speaker 2");
        None: the participant itself."""
        if in_track is None:
            return self if self.in_track is None else replace(self, in_track=None, label=self.name)
        return replace(self, in_track=in_track, label=f"{self.name} · {in_track}")


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
    the Whisper model that decodes the track. ``diarization`` is the track's live diarization
    mode (the session's, or the participant's own: see ``bot/pipeline/track_diarization.py``).
    """

    model: str
    language: str | None = None
    hotwords: str | None = None
    initial_prompt: str | None = None
    diarization: Literal["off", "on", "auto"] = "off"
