"""Usage metering: cumulative counts in, checkpoint increments out. Pure: no I/O, no clock.

A track may run several pipelines over a meeting (a mute ends one, an unmute or a rejoin
starts another); each pipeline's stream keeps cumulative ``StreamStats``. The meter is told
the latest counts of each stream (``record``) and when a track starts and stops, and hands out
what has not been written yet (``due``). The caller writes those increments and, only once the
write succeeded, ``confirm``s them: a failed write is retried whole at the next checkpoint, so
nothing is counted twice and nothing is lost.

    meter.start("TR_1")
    meter.record("TR_1", stream=1, stats=stream.stats)
    deltas = meter.due()          # [UsageDelta("TR_1", audio_s=..., ...)]
    ...write them...
    meter.confirm(deltas)
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bot.pipeline.engine import StreamStats


@dataclass(frozen=True, slots=True)
class UsageTotals:
    """What one track has used so far, over all its streams."""

    audio_s: float = 0.0
    speech_s: float = 0.0
    partials: int = 0
    finals: int = 0
    errors: int = 0

    def __add__(self, other: UsageTotals) -> UsageTotals:
        return UsageTotals(
            self.audio_s + other.audio_s,
            self.speech_s + other.speech_s,
            self.partials + other.partials,
            self.finals + other.finals,
            self.errors + other.errors,
        )

    @classmethod
    def of(cls, stats: StreamStats) -> UsageTotals:
        return cls(stats.audio_s, stats.speech_s, stats.partials, stats.finals, stats.errors)


@dataclass(frozen=True, slots=True)
class UsageDelta:
    """Usage of one track since the last confirmed checkpoint (never negative)."""

    track_sid: str
    audio_s: float
    speech_s: float
    partials: int
    finals: int
    errors: int
    ended: bool  # the track stopped being transcribed: its usage row closes
    totals: UsageTotals = field(repr=False)  # what ``confirm`` records as written


@dataclass(slots=True)
class _Track:
    streams: dict[int, UsageTotals] = field(default_factory=dict)
    written: UsageTotals = field(default_factory=UsageTotals)
    live: bool = False
    ended: bool = False  # stopped, and that not yet written

    def totals(self) -> UsageTotals:
        total = UsageTotals()
        for counts in self.streams.values():
            total += counts
        return total


class UsageMeter:
    """Usage of one room's tracks, by track sid."""

    def __init__(self) -> None:
        self._tracks: dict[str, _Track] = {}

    @property
    def live_tracks(self) -> int:
        """Tracks started and not stopped."""
        return sum(1 for t in self._tracks.values() if t.live)

    def start(self, track_sid: str) -> None:
        track = self._tracks.setdefault(track_sid, _Track())
        track.live = True
        track.ended = False

    def record(self, track_sid: str, stream: int, stats: StreamStats) -> None:
        """The cumulative counts of one of the track's streams (``stream`` tells them apart)."""
        self._tracks.setdefault(track_sid, _Track()).streams[stream] = UsageTotals.of(stats)

    def stop(self, track_sid: str) -> None:
        track = self._tracks.setdefault(track_sid, _Track())
        track.live = False
        track.ended = True

    def due(self) -> list[UsageDelta]:
        """Increments not yet written: tracks with new audio or finals, and stopped tracks."""
        deltas: list[UsageDelta] = []
        for sid, track in self._tracks.items():
            now, before = track.totals(), track.written
            audio_s = now.audio_s - before.audio_s
            if audio_s <= 0 and now.finals == before.finals and not track.ended:
                continue
            deltas.append(
                UsageDelta(
                    track_sid=sid,
                    audio_s=max(0.0, audio_s),
                    speech_s=max(0.0, now.speech_s - before.speech_s),
                    partials=max(0, now.partials - before.partials),
                    finals=max(0, now.finals - before.finals),
                    errors=max(0, now.errors - before.errors),
                    ended=track.ended,
                    totals=now,
                )
            )
        return deltas

    def confirm(self, deltas: list[UsageDelta]) -> None:
        """These increments were written."""
        for delta in deltas:
            track = self._tracks[delta.track_sid]
            track.written = delta.totals
            if delta.ended and not track.live:
                track.ended = False
