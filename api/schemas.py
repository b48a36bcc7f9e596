"""Request and response bodies (pydantic); the OpenAPI document is generated from these.

Request models forbid unknown fields and bound every string, so any input the schema accepts can
be stored (PostgreSQL ``text`` cannot hold NUL, columns have lengths). Money is a decimal string.
"""

from __future__ import annotations

import datetime as dt
import enum
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from core.transcripts import ExportFormat
from store.enums import DiarizationMode, JobStatus, ParticipantRole, SessionStatus
from store.models import LANGUAGE_LEN, MODEL_LEN, NAME_LEN, USER_ID_LEN


def _storable(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode (no lone surrogates)") from None
    return value


StorableStr = Annotated[str, AfterValidator(_storable)]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Query(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


# ---- sessions ---------------------------------------------------------------------------------


LanguageField = Annotated[
    str | None,
    Field(
        max_length=LANGUAGE_LEN,
        pattern=r"^(auto|[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*)$",
        description="Spoken language, a Whisper language code (en, ru, en-US...): every "
        "utterance is decoded in it; null or auto: detected per utterance",
    ),
]
HotwordsField = Annotated[
    StorableStr | None,
    Field(
        max_length=500,
        description="Names and jargon the decoder should expect (replaces ASR_HOTWORDS); "
        "null: the worker's",
    ),
]
PromptField = Annotated[
    StorableStr | None,
    Field(
        max_length=1000,
        description="Text that primes the decoder's style and vocabulary (replaces "
        "ASR_INITIAL_PROMPT); null: the worker's",
    ),
]
ModelField = Annotated[
    str | None,
    Field(
        max_length=MODEL_LEN,
        description="Whisper model, one of ASR_MODELS (400 unknown_model otherwise); null: "
        "the worker's default",
    ),
]
DIARIZATION_DOC = (
    "Splitting one microphone by speaker: off, on or auto. Stored and passed to the bot's "
    "track settings; today every mode labels each segment with its participant (off)"
)


class SessionCreate(_Request):
    """A new session. Speech settings apply to every track the bot starts for it."""

    title: StorableStr = Field(default="", max_length=500, description="Display title")
    language: LanguageField = None
    hotwords: HotwordsField = None
    initial_prompt: PromptField = None
    model: ModelField = None
    diarization: DiarizationMode = Field(default=DiarizationMode.OFF, description=DIARIZATION_DOC)


class SessionUpdate(_Request):
    """Change a session: only the fields present change (null resets a speech setting). Speech
    settings apply to the tracks the bot starts afterwards; tracks already running keep theirs."""

    title: StorableStr | None = Field(default=None, max_length=500, description="Display title")
    language: LanguageField = None
    hotwords: HotwordsField = None
    initial_prompt: PromptField = None
    model: ModelField = None
    diarization: DiarizationMode | None = Field(default=None, description=DIARIZATION_DOC)


class TranscriptionOut(BaseModel):
    status: JobStatus
    requested_at: dt.datetime
    claimed_at: dt.datetime | None
    stopped_at: dt.datetime | None
    stop_reason: str | None


class SessionOut(BaseModel):
    slug: str = Field(description="Session id and LiveKit room name")
    title: str
    space_id: str
    created_by: str
    status: SessionStatus
    language: str | None = Field(description="null: detected per utterance")
    hotwords: str | None
    initial_prompt: str | None
    model: str | None = Field(description="Whisper model; null: the worker's default")
    diarization: DiarizationMode
    created_at: dt.datetime
    started_at: dt.datetime | None
    ended_at: dt.datetime | None
    last_activity_at: dt.datetime
    transcription: TranscriptionOut | None = Field(
        description="The session's transcription job, or null if none was ever requested"
    )


class SessionPage(BaseModel):
    items: list[SessionOut]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page; null: last")


class SessionListQuery(_Query):
    limit: int = Field(default=20, ge=1, le=100)
    cursor: str | None = Field(default=None, max_length=200, description="From next_cursor")
    include_expired: bool = Field(default=False, description="Also list EXPIRED sessions")
    status: SessionStatus | None = Field(default=None, description="Only sessions in this status")


# ---- tokens and participants ------------------------------------------------------------------


class JoinTokenOut(BaseModel):
    token: str = Field(description="LiveKit AccessToken (JWT)")
    url: str = Field(description="LiveKit server URL to connect to")
    room: str = Field(description="Room name (= session slug)")
    identity: str = Field(description="Participant identity in the token")


class ParticipantJoin(_Request):
    name: StorableStr = Field(default="", max_length=NAME_LEN, description="Display name")


class ParticipantOut(BaseModel):
    identity: str
    name: str
    user_id: str | None
    role: ParticipantRole
    joined_at: dt.datetime
    left_at: dt.datetime | None


class TokenQuery(_Query):
    name: StorableStr | None = Field(
        default=None, max_length=NAME_LEN, description="Display name in the room"
    )


class JoinOut(BaseModel):
    participant: ParticipantOut
    session: SessionOut
    transcription_refused: str | None = Field(
        description="Why transcription was not requested: stopped_by_user, session_track_limit, "
        "user_track_limit or quota_exceeded; null when it was (or already ran)"
    )


class ParticipantList(BaseModel):
    items: list[ParticipantOut]


class ParticipantListQuery(_Query):
    active: bool | None = Field(
        default=None,
        description="true: only participants in the room now; false: only those who left",
    )


class SpaceSettingsOut(BaseModel):
    space_id: str
    participants_may_end: bool = Field(
        description="Any participant of a session may end it (else its creator or an admin)"
    )


class SpaceSettingsUpdate(_Request):
    participants_may_end: bool


# ---- transcripts ------------------------------------------------------------------------------


class TranscriptQuery(_Query):
    limit: int = Field(default=100, ge=1, le=500)
    cursor: str | None = Field(default=None, max_length=200, description="From next_cursor")
    q: StorableStr | None = Field(
        default=None, min_length=1, max_length=200, description="Full-text search (ru/en stemming)"
    )
    format: ExportFormat | None = Field(
        default=None, description="Download the whole transcript in this format instead of a page"
    )


class SegmentOut(BaseModel):
    id: int
    utterance_id: str
    speaker: str = Field(description="Participant display name or the segment's speaker label")
    speaker_identity: str | None
    text: str
    language: str | None
    start_ms: int = Field(description="Milliseconds from the session start")
    end_ms: int
    confidence: float | None
    original_text: str | None = Field(
        default=None, description="What the bot decoded, when text was corrected; else null"
    )
    corrected_by: str | None = Field(default=None, description="User who corrected the text")
    corrected_at: dt.datetime | None = None


class SegmentCorrection(_Request):
    text: StorableStr = Field(
        min_length=1, max_length=10_000, description="The corrected text of the final segment"
    )


class TranscriptPage(BaseModel):
    items: list[SegmentOut]
    next_cursor: str | None


class ExportSessionOut(BaseModel):
    slug: str
    title: str
    space_id: str


class ExportSegmentOut(BaseModel):
    start_ms: int
    end_ms: int
    speaker: str
    speaker_identity: str
    language: str | None
    text: str


class TranscriptExport(BaseModel):
    """The ``?format=json`` download (see ``core.transcripts.render_json``)."""

    session: ExportSessionOut
    segments: list[ExportSegmentOut]


# ---- usage ------------------------------------------------------------------------------------


class UsageTotals(BaseModel):
    currency: str
    tracks: int
    audio_seconds: Decimal
    speech_seconds: Decimal
    billed_minutes: int = Field(description="Sum over tracks of ceil(audio_seconds / 60)")
    total_cost: Decimal = Field(description="Sum over tracks of billed_minutes x cost_per_minute")


class TrackUsageOut(BaseModel):
    track_sid: str
    participant_identity: str | None
    participant_name: str | None
    user_id: str | None
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
    started_at: dt.datetime
    ended_at: dt.datetime | None


class SessionUsage(BaseModel):
    slug: str
    rows: list[TrackUsageOut] = Field(description="One row per transcribed participant track")
    totals: list[UsageTotals] = Field(description="One entry per currency (usually one or none)")


class UsageFormatQuery(_Query):
    format: Literal["json", "csv"] = "json"


class GroupBy(enum.StrEnum):
    DAY = "day"
    PARTICIPANT = "participant"
    USER = "user"
    SESSION = "session"


MAX_REPORT_DAYS = 366


class UsageReportQuery(_Query):
    date_from: dt.date | None = Field(
        default=None, alias="from", description="First day (UTC), inclusive; default: 1st of month"
    )
    date_to: dt.date | None = Field(
        default=None, alias="to", description="Last day (UTC), inclusive; default: today"
    )
    group_by: GroupBy = GroupBy.DAY
    user_id: StorableStr | None = Field(
        default=None,
        min_length=1,
        max_length=USER_ID_LEN,
        description="Only this user's usage (members: only their own)",
    )
    format: Literal["json", "csv"] = "json"


class UsageGroupOut(BaseModel):
    key: str = Field(
        description="Day (YYYY-MM-DD), participant identity, user id or session slug; "
        "empty for usage of deleted sessions or unknown users"
    )
    day: dt.date | None
    user_id: str | None
    session_slug: str | None
    session_title: str | None
    participant_identity: str | None
    participant_name: str | None
    currency: str
    tracks: int
    audio_seconds: Decimal
    speech_seconds: Decimal
    billed_minutes: int
    total_cost: Decimal


class UsageReport(BaseModel):
    space_id: str
    date_from: dt.date = Field(serialization_alias="from")
    date_to: dt.date = Field(serialization_alias="to")
    group_by: GroupBy
    user_id: str | None
    rows: list[UsageGroupOut]
    totals: list[UsageTotals]


class QuotaOut(BaseModel):
    space_id: str
    monthly_minutes: int | None = Field(description="Effective monthly quota; null: unlimited")
    source: Literal["default", "space"] = Field(
        description="default: SPACE_MONTHLY_MINUTES_QUOTA; space: this space's own setting"
    )
    used_minutes: int = Field(description="Billed minutes of the current UTC month")


class QuotaUpdate(_Request):
    monthly_minutes: int | None = Field(
        ge=0, le=2_000_000_000, description="Minutes per UTC month; null: unlimited"
    )
