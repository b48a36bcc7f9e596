"""Plain values the stores take and return.

Reads return frozen dataclasses, not ORM objects: nothing lazy-loads after the transaction closed,
and the API's schemas and the bot depend on these shapes only.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Final

from store.enums import (
    DeliveryStatus,
    DiarizationMode,
    JobStatus,
    ParticipantRole,
    SessionStatus,
    TranscriptVersion,
)

__all__ = [
    "ClaimedDelivery",
    "FinalSegment",
    "JobLease",
    "JobNotification",
    "JobRecord",
    "LimitCheck",
    "LimitReason",
    "ParticipantRecord",
    "SearchHit",
    "SearchPage",
    "SegmentCursor",
    "SegmentRecord",
    "SessionCursor",
    "SessionRecord",
    "SessionUsage",
    "SpaceSettingsRecord",
    "SpeakerRecord",
    "SweepResult",
    "TranscriptPage",
    "TranscriptionLimits",
    "UpsertOutcome",
    "UsageCheckpoint",
    "UsageGroup",
    "UsageGroupBy",
    "UsageRecord",
    "UsageReport",
    "UsageSummary",
    "UsageTotals",
    "WebhookAttemptRecord",
    "WebhookDeliveryRecord",
    "WebhookEndpointRecord",
    "WordTiming",
]


# -- sessions and participants -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SessionRecord:
    id: int
    slug: str
    title: str
    space_id: str
    created_by: str | None  # None: created with the admin key for no user
    status: SessionStatus
    language: str | None
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    last_activity_at: datetime
    # speech settings, read by the bot when a track's pipeline starts
    hotwords: str | None = None
    initial_prompt: str | None = None
    asr_model: str | None = None  # None: the worker's default model
    diarization: DiarizationMode = DiarizationMode.OFF
    # the speaker labels readers get by default; ``final`` once the after-meeting pass ran
    transcript_version: TranscriptVersion = TranscriptVersion.LIVE
    diarized_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class SpaceSettingsRecord:
    """A space's switches (the defaults when the space has no row)."""

    space_id: str
    participants_may_end: bool = False


@dataclass(frozen=True, slots=True)
class SessionCursor:
    """Position in a newest-first session listing: the last row's ``(created_at, id)``."""

    created_at: datetime
    id: int


@dataclass(frozen=True, slots=True)
class ParticipantRecord:
    id: int
    session_id: int
    identity: str
    name: str
    user_id: str | None
    role: ParticipantRole
    joined_at: datetime
    left_at: datetime | None


@dataclass(frozen=True, slots=True)
class SweepResult:
    """Slugs of the sessions the lifecycle sweeper ended (inactive) and expired (never started)."""

    ended: list[str]
    expired: list[str]


# -- segments ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WordTiming:
    word: str
    start_ms: int
    end_ms: int
    probability: float | None = None


@dataclass(frozen=True, slots=True)
class FinalSegment:
    """A final caption as the bot persists it.

    ``start_ms``/``end_ms`` are on the session timeline (milliseconds from the session's start);
    ``started_at``/``ended_at`` are wall-clock times. ``participant_identity`` links the segment
    to the participant row when one exists.
    """

    session_id: int
    utterance_id: str
    track_sid: str
    text: str
    start_ms: int
    end_ms: int
    participant_identity: str | None = None
    speaker_label: str = ""
    # in-track speaker of a diarized track ("Speaker 2"); None when the track is not diarized
    speaker: str | None = None
    language: str | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    words: Sequence[WordTiming] = ()
    confidence: float | None = None
    model: str = ""


class UpsertOutcome(StrEnum):
    INSERTED = "inserted"
    UPDATED = "updated"  # same utterance re-sent with different content: replaced
    UNCHANGED = "unchanged"  # exact duplicate: nothing written
    CONFLICT = "conflict"  # utterance id already used by another track: kept the first
    SESSION_MISSING = "session_missing"  # session deleted meanwhile: dropped


@dataclass(frozen=True, slots=True)
class SegmentRecord:
    id: int
    session_id: int
    utterance_id: str
    participant_id: int | None
    participant_identity: str | None
    participant_name: str | None
    track_sid: str
    speaker_label: str
    text: str
    language: str | None
    start_ms: int
    end_ms: int
    started_at: datetime | None
    ended_at: datetime | None
    confidence: float | None
    model: str
    words: tuple[WordTiming, ...] | None = None  # None when not requested or not stored
    # a corrected final: ``text`` is the correction, ``original_text`` what the bot decoded
    original_text: str | None = None
    corrected_by: str | None = None
    corrected_at: datetime | None = None
    # in-track speaker labels of a diarized track: live and after-meeting (None: not diarized)
    speaker: str | None = None
    final_speaker: str | None = None
    # the names the host app gave those labels (speaker_names), None when not renamed
    speaker_name: str | None = None
    final_speaker_name: str | None = None


@dataclass(frozen=True, slots=True)
class SpeakerRecord:
    """An in-track speaker label of a participant's diarized track, with how many segments
    carry it (in the transcript version counted) and the name the host app gave it."""

    participant_identity: str
    participant_name: str | None
    speaker: str
    segments: int
    name: str | None


MAX_BIGINT: Final = 2**63 - 1


@dataclass(frozen=True, slots=True)
class SegmentCursor:
    """Keyset position in a transcript: the last row's ``(start_ms, id)``."""

    start_ms: int
    id: int

    def encode(self) -> str:
        raw = f"{self.start_ms}:{self.id}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str) -> SegmentCursor:
        """Parse :meth:`encode`'s output; ``ValueError`` on anything else."""
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
            start_text, id_text = raw.split(":")
            start_ms, id_ = int(start_text), int(id_text)
        except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
            raise ValueError("invalid cursor") from exc
        # both are BIGINT columns: a value outside them would fail in the driver, not here
        if not (0 <= start_ms <= MAX_BIGINT and 0 <= id_ <= MAX_BIGINT):
            raise ValueError("invalid cursor")
        return cls(start_ms, id_)


@dataclass(frozen=True, slots=True)
class SearchHit:
    """A segment found by a search, with its rank and highlighted snippet."""

    segment_id: int
    session_id: int
    session_slug: str
    session_title: str
    start_ms: int
    end_ms: int
    text: str
    language: str | None
    speaker_label: str
    participant_identity: str | None
    participant_name: str | None
    rank: float
    # ts_headline's snippet, matches between store.transcripts.HIGHLIGHT_START and _STOP
    headline: str
    # the in-track labels and their names, as on SegmentRecord, and the session's version
    speaker: str | None = None
    final_speaker: str | None = None
    speaker_name: str | None = None
    final_speaker_name: str | None = None
    transcript_version: TranscriptVersion = TranscriptVersion.LIVE


@dataclass(frozen=True, slots=True)
class SearchPage:
    items: list[SearchHit]
    has_more: bool


@dataclass(frozen=True, slots=True)
class TranscriptPage:
    items: list[SegmentRecord]
    next_cursor: SegmentCursor | None  # None on the last page


# -- usage and limits ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UsageCheckpoint:
    """Increments since the previous checkpoint of one track (deltas, so a worker that takes a
    session over after a crash simply adds its own counts); ``ended`` closes the track."""

    session_id: int
    track_sid: str
    audio_seconds: Decimal = Decimal(0)
    speech_seconds: Decimal = Decimal(0)
    partial_count: int = 0
    final_count: int = 0
    error_count: int = 0
    ended: bool = False


@dataclass(frozen=True, slots=True)
class UsageRecord:
    id: int
    session_id: int | None  # None once the session was deleted (billing history)
    participant_id: int | None
    participant_identity: str | None
    participant_name: str | None
    space_id: str
    user_id: str | None
    track_sid: str
    model: str
    audio_seconds: Decimal
    speech_seconds: Decimal
    partial_count: int
    final_count: int
    error_count: int
    billed_minutes: int
    cost_per_minute: Decimal
    total_cost: Decimal
    currency: str
    started_at: datetime
    ended_at: datetime | None
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class UsageTotals:
    """Sums over usage rows of one currency; ``billed_minutes`` sums per-track billed minutes."""

    currency: str
    tracks: int
    audio_seconds: Decimal
    speech_seconds: Decimal
    partial_count: int
    final_count: int
    error_count: int
    billed_minutes: int
    total_cost: Decimal


@dataclass(frozen=True, slots=True)
class SessionUsage:
    rows: list[UsageRecord]
    totals: list[UsageTotals]  # one entry per currency (normally exactly one, or none)


class UsageGroupBy(StrEnum):
    DAY = "day"
    WEEK = "week"  # ISO weeks, Monday first
    MONTH = "month"
    PARTICIPANT = "participant"
    USER = "user"
    SESSION = "session"
    SPACE = "space"


@dataclass(frozen=True, slots=True)
class UsageGroup:
    """One line of a usage report. Only the key fields of the grouping are set: ``day`` for DAY
    (for WEEK and MONTH: the period's first day);
    ``participant_*`` plus ``session_*`` for PARTICIPANT; ``user_id`` for USER (None = anonymous);
    ``session_*`` for SESSION; ``space_id`` for SPACE. Rows of deleted sessions group under
    ``session_id=None``/``participant_id=None``."""

    totals: UsageTotals
    day: date | None = None
    space_id: str | None = None
    user_id: str | None = None
    session_id: int | None = None
    session_slug: str | None = None
    session_title: str | None = None
    participant_id: int | None = None
    participant_identity: str | None = None
    participant_name: str | None = None


@dataclass(frozen=True, slots=True)
class UsageSummary:
    """Totals of a usage report's filter, per currency: how many sessions (deleted sessions'
    usage counts in the minutes and cost but not here), tracks, billed minutes, cost, and the
    average wall-clock length (``ended_at - started_at``) of those sessions that ended."""

    currency: str
    sessions: int
    tracks: int
    audio_seconds: Decimal
    billed_minutes: int
    total_cost: Decimal
    average_session_seconds: Decimal | None  # None when none of the sessions has ended


@dataclass(frozen=True, slots=True)
class UsageReport:
    group_by: UsageGroupBy
    start: datetime
    end: datetime
    groups: list[UsageGroup]
    totals: list[UsageTotals]  # one entry per currency


@dataclass(frozen=True, slots=True)
class TranscriptionLimits:
    """Limits checked when a track's transcription starts; None means no limit.

    ``monthly_minutes_quota`` is the default for spaces without a ``space_quotas`` row. A track
    counts as active until it is closed, unless its last checkpoint is older than ``stale_after``
    (its worker died without closing it).
    """

    max_tracks_per_session: int | None = None
    max_tracks_per_user: int | None = None
    monthly_minutes_quota: int | None = None
    stale_after: timedelta = field(default=timedelta(minutes=2))


class LimitReason(StrEnum):
    SESSION_TRACKS = "session_tracks"
    USER_TRACKS = "user_tracks"
    MONTHLY_QUOTA = "monthly_quota"


@dataclass(frozen=True, slots=True)
class LimitCheck:
    reason: LimitReason | None  # the first limit that refuses, None when allowed
    session_tracks: int
    user_tracks: int | None  # None when no user is involved
    used_minutes: int  # billed minutes of the space in the current UTC month
    quota_minutes: int | None  # None = unlimited

    @property
    def allowed(self) -> bool:
        return self.reason is None


# -- transcription jobs --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class JobRecord:
    id: int
    session_id: int
    status: JobStatus
    worker_id: str | None
    lease_expires_at: datetime | None
    heartbeat_at: datetime | None
    attempts: int
    requested_at: datetime
    claimed_at: datetime | None
    stopped_at: datetime | None
    stop_reason: str | None


@dataclass(frozen=True, slots=True)
class JobLease:
    """A worker's hold on a job. ``attempt`` fences it: once another claim bumped the job's
    attempts, every call with this lease fails, even from the same worker id."""

    job_id: int
    session_id: int
    session_slug: str
    worker_id: str
    attempt: int
    lease_expires_at: datetime


@dataclass(frozen=True, slots=True)
class JobNotification:
    """Payload of a ``NOTIFY`` on :data:`store.notify.JOB_CHANNEL`. ``event`` is "requested"
    (claim now) or "stopped" (the worker holding it should leave; its next heartbeat fails)."""

    event: str
    job_id: int
    session_id: int
    session_slug: str


# -- outbound webhooks ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WebhookEndpointRecord:
    """An endpoint as the API shows it: never its secrets."""

    id: str
    space_id: str
    url: str
    description: str
    event_types: list[str] | None
    enabled: bool
    previous_secret_expires_at: datetime | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class ClaimedDelivery:
    """A delivery claimed by a delivery loop for one attempt (``attempt``, counted from 1)."""

    id: int
    event_id: str
    event_type: str
    body: str
    attempt: int
    endpoint_id: str
    url: str
    # the secrets to sign with now: the current one, then the previous one during its grace
    secrets: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class WebhookAttemptRecord:
    attempt: int
    attempted_at: datetime
    status_code: int | None
    latency_ms: int
    error: str | None


@dataclass(frozen=True, slots=True)
class WebhookDeliveryRecord:
    id: int
    event_id: str
    event_type: str
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime
    created_at: datetime
    finished_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    body: str = ""  # the event as sent
    attempt_log: list[WebhookAttemptRecord] = field(default_factory=list)
