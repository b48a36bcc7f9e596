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
from store.enums import (
    DeliveryStatus,
    DiarizationMode,
    JobStatus,
    ParticipantRole,
    SessionStatus,
    TranscriptVersion,
)
from store.models import (
    IDENTITY_LEN,
    LANGUAGE_LEN,
    MODEL_LEN,
    NAME_LEN,
    SPEAKER_LEN,
    USER_ID_LEN,
    WEBHOOK_URL_LEN,
)


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
    "Splitting one microphone by speaker (needs the bot's `diarization` extra): off, on or "
    "auto. on: each caption and segment of a track carries an in-track label within its "
    'participant ("Room 4 · Speaker 2"; segment `speaker`, caption attribute '
    "`transcriber.speaker`); auto: the same once a track is heard to carry two voices. A "
    "participant's LiveKit attribute `transcriber.diarization` (off|on|auto), set by the host "
    "app, overrides this for that participant's tracks"
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
    created_by: str | None = Field(
        description="The creating user; null for a session the admin key created for no user"
    )
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
    expires_at: dt.datetime = Field(
        description="The token lets its holder join until then; ask again for a new one"
    )
    can_publish: bool = Field(description="Whether the token may publish audio and video")


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
    speak: bool = Field(
        default=True,
        description="false: a listen-only token (subscribe and data, no audio or video)",
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


VERSION_DOC = (
    "Which speaker labels to read: live (as captioned) or final (after the meeting's offline "
    "diarization, mapped onto the live labels). Default: the session's transcript_version; "
    "final on a session that has no final version yet is a 409 transcript_not_final. Every "
    "reply says the version read in the X-Transcript-Version header"
)


class TranscriptQuery(_Query):
    limit: int = Field(default=100, ge=1, le=500)
    cursor: str | None = Field(default=None, max_length=200, description="From next_cursor")
    q: StorableStr | None = Field(
        default=None, min_length=1, max_length=200, description="Full-text search (ru/en stemming)"
    )
    format: ExportFormat | None = Field(
        default=None, description="Download the whole transcript in this format instead of a page"
    )
    version: TranscriptVersion | None = Field(default=None, description=VERSION_DOC)


class SegmentOut(BaseModel):
    id: int
    utterance_id: str
    speaker: str = Field(
        description="Who spoke, as shown: the name given to the in-track label (PUT .../speakers), "
        "else '<participant name> · <speaker_label>' on a diarized track, else the participant"
    )
    speaker_identity: str | None
    speaker_label: str | None = Field(
        default=None,
        description="The in-track speaker label ('Speaker 2') in the version read; null when the "
        "participant's track was not diarized",
    )
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
    transcript_version: TranscriptVersion = Field(description="The speaker labels read")
    items: list[SegmentOut]
    next_cursor: str | None


class SpeakerOut(BaseModel):
    participant_identity: str
    participant_name: str | None
    speaker: str = Field(description="The in-track label ('Speaker 2')")
    segments: int = Field(description="Segments carrying the label in the session's version")
    name: str | None = Field(description="The name given to the label; null: none")
    display: str = Field(description="What transcripts and exports show for it")


class SpeakerList(BaseModel):
    transcript_version: TranscriptVersion
    items: list[SpeakerOut]


class SpeakerNaming(_Request):
    participant_identity: StorableStr = Field(min_length=1, max_length=IDENTITY_LEN)
    speaker: StorableStr = Field(
        min_length=1, max_length=SPEAKER_LEN, description="The in-track label to name"
    )
    name: StorableStr | None = Field(
        max_length=NAME_LEN, description="The name to show; null or blank removes the name"
    )


class ExportSessionOut(BaseModel):
    slug: str
    title: str
    space_id: str
    transcript_version: TranscriptVersion


class ExportSegmentOut(BaseModel):
    start_ms: int
    end_ms: int
    speaker: str
    speaker_identity: str
    speaker_label: str | None
    language: str | None
    text: str


class TranscriptExport(BaseModel):
    """The ``?format=json`` download (see ``core.transcripts.render_json``)."""

    session: ExportSessionOut
    segments: list[ExportSegmentOut]


# ---- search -----------------------------------------------------------------------------------

# offset pagination, bounded: a ranked search sorts every match, so deep pages cost as much as
# a scan; 50 pages of 20 is more than anyone reads of a ranked list
MAX_SEARCH_OFFSET = 1000


class SearchQuery(_Query):
    q: StorableStr = Field(
        min_length=1,
        max_length=200,
        description='Words to find (web search syntax: "a phrase", or, -exclude); each '
        "session's language picks the stemming (english, russian; else none)",
    )
    limit: int = Field(default=20, ge=1, le=50)
    offset: int = Field(
        default=0, ge=0, le=MAX_SEARCH_OFFSET, description="From next_offset of the last page"
    )
    session: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="Only this session (slug)",
    )


class SearchHitOut(BaseModel):
    session_slug: str
    session_title: str
    segment_id: int
    start_ms: int = Field(description="Milliseconds from the session start")
    end_ms: int
    speaker: str
    speaker_identity: str | None
    language: str | None
    text: str = Field(description="The whole segment, plain text")
    snippet_html: str = Field(
        description="The matching part of the segment as HTML: the text is HTML-escaped and "
        "every match is wrapped in <mark>...</mark>; fragments are joined by ' ... '"
    )
    rank: float = Field(description="ts_rank_cd of the segment against the query; higher first")
    transcript_url: str = Field(
        description="The session's transcript page that starts at this segment"
    )


class SearchResults(BaseModel):
    items: list[SearchHitOut]
    next_offset: int | None = Field(description="Pass as ?offset= for the next page; null: last")


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
    WEEK = "week"
    MONTH = "month"
    PARTICIPANT = "participant"
    USER = "user"
    SESSION = "session"


MAX_REPORT_DAYS = 366


class UsageFilterQuery(_Query):
    """The filters every usage report takes (dates, user, format)."""

    date_from: dt.date | None = Field(
        default=None, alias="from", description="First day (UTC), inclusive; default: 1st of month"
    )
    date_to: dt.date | None = Field(
        default=None, alias="to", description="Last day (UTC), inclusive; default: today"
    )
    user_id: StorableStr | None = Field(
        default=None,
        min_length=1,
        max_length=USER_ID_LEN,
        description="Only this user's usage (members: only their own)",
    )
    format: Literal["json", "csv"] = "json"


class UsageReportQuery(UsageFilterQuery):
    group_by: GroupBy = Field(
        default=GroupBy.DAY, description="day, week (ISO, from Monday), month (UTC), ..."
    )


class UsageGroupOut(BaseModel):
    key: str = Field(
        description="Day (YYYY-MM-DD), ISO week (YYYY-Www), month (YYYY-MM), participant "
        "identity, user id or session slug; empty for usage of deleted sessions or unknown users"
    )
    day: dt.date | None = Field(description="The day, or the first day of the week or month")
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


class UsageSummaryOut(BaseModel):
    currency: str
    sessions: int = Field(description="Sessions with usage (deleted sessions are not counted)")
    tracks: int
    audio_seconds: Decimal
    billed_minutes: int = Field(description="Sum over tracks of ceil(audio_seconds / 60)")
    total_cost: Decimal = Field(description="Sum over tracks of billed_minutes x cost_per_minute")
    average_session_seconds: Decimal | None = Field(
        description="Average ended_at - started_at of those sessions that ended; null: none"
    )


class UsageSummary(BaseModel):
    space_id: str
    date_from: dt.date = Field(serialization_alias="from")
    date_to: dt.date = Field(serialization_alias="to")
    user_id: str | None
    totals: list[UsageSummaryOut] = Field(description="One entry per currency (usually one)")


class QuotaOut(BaseModel):
    space_id: str
    monthly_minutes: int | None = Field(description="Effective monthly quota; null: unlimited")
    source: Literal["default", "space"] = Field(
        description="default: SPACE_MONTHLY_MINUTES_QUOTA; space: this space's own setting"
    )
    used_minutes: int | None = Field(
        description="Billed minutes of the space in the current UTC month; null for members "
        "(admins and the admin key only)"
    )


class QuotaUpdate(_Request):
    monthly_minutes: int | None = Field(
        ge=0, le=2_000_000_000, description="Minutes per UTC month; null: unlimited"
    )


# ---- retention --------------------------------------------------------------------------------

MAX_RETENTION_DAYS = 36_500


class RetentionOut(BaseModel):
    space_id: str
    transcript_days: int | None = Field(
        description="Transcripts (segments, participant names, session title) are deleted this "
        "many days after a session ends; null: kept forever. Usage and cost rows are kept"
    )
    recording_days: int | None = Field(
        default=None,
        description="The audio of diarized tracks (kept for the after-meeting diarization) is "
        "deleted this many days after it was recorded; null: as soon as that pass is done",
    )


class RetentionUpdate(_Request):
    transcript_days: int | None = Field(
        ge=1, le=MAX_RETENTION_DAYS, description="Days to keep transcripts; null: forever"
    )
    recording_days: int | None = Field(
        default=None,
        ge=1,
        le=MAX_RETENTION_DAYS,
        description="Days to keep track recordings; null (or absent): only until the "
        "after-meeting diarization is done",
    )


# ---- outbound webhooks ------------------------------------------------------------------------

WebhookEventType = Literal["session.live", "session.ended", "transcript.ready", "usage.updated"]


class WebhookEndpointCreate(_Request):
    url: StorableStr = Field(
        min_length=1,
        max_length=WEBHOOK_URL_LEN,
        description="http or https URL the events are POSTed to (see the SSRF rules in "
        "api/README.md: loopback and private addresses are refused unless the server allows "
        "them)",
    )
    description: StorableStr = Field(default="", max_length=500)
    event_types: list[WebhookEventType] | None = Field(
        default=None,
        min_length=1,
        max_length=4,
        description="The event types to receive; omitted or null: all",
    )
    enabled: bool = True


class WebhookEndpointUpdate(_Request):
    """Fields left out keep their values; ``event_types: null`` means all events."""

    url: StorableStr | None = Field(default=None, min_length=1, max_length=WEBHOOK_URL_LEN)
    description: StorableStr | None = Field(default=None, max_length=500)
    event_types: list[WebhookEventType] | None = Field(default=None, min_length=1, max_length=4)
    enabled: bool | None = None


class WebhookEndpointOut(BaseModel):
    id: str
    url: str
    description: str
    event_types: list[str] | None = Field(description="null: every event type")
    enabled: bool
    previous_secret_expires_at: dt.datetime | None = Field(
        description="Until then deliveries are also signed with the secret before the last "
        "rotation (a second v1= in Transcriber-Signature)"
    )
    created_at: dt.datetime
    updated_at: dt.datetime


class WebhookEndpointSecretOut(WebhookEndpointOut):
    secret: str = Field(
        description="The signing secret; shown only in this reply (create and rotate-secret)"
    )


class WebhookEndpointList(BaseModel):
    items: list[WebhookEndpointOut]


class WebhookSecretRotate(_Request):
    grace_minutes: int | None = Field(
        default=None,
        ge=0,
        le=60 * 24 * 30,
        description="How long the current secret keeps signing beside the new one; omitted: "
        "WEBHOOK_SECRET_GRACE_HOURS",
    )


class WebhookAttemptOut(BaseModel):
    attempt: int
    attempted_at: dt.datetime
    status_code: int | None = Field(description="The receiver's HTTP status; null: no response")
    latency_ms: int
    error: str | None


class WebhookDeliveryOut(BaseModel):
    event_id: str = Field(description="Transcriber-Event-Id: the same on every attempt")
    event_type: str
    status: DeliveryStatus
    attempts: int
    next_attempt_at: dt.datetime | None = Field(description="When PENDING: the next attempt")
    created_at: dt.datetime
    finished_at: dt.datetime | None
    last_status_code: int | None
    last_error: str | None
    attempt_log: list[WebhookAttemptOut]


class WebhookDeliveryPage(BaseModel):
    items: list[WebhookDeliveryOut]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page; null: last")


class WebhookDeliveryQuery(_Query):
    limit: int = Field(default=20, ge=1, le=100)
    cursor: str | None = Field(default=None, max_length=30, description="From next_cursor")


# the payloads POSTed to endpoints (documented under the OpenAPI document's "webhooks")


class WebhookSessionData(BaseModel):
    slug: str
    title: str
    status: SessionStatus
    created_by: str | None = Field(description="null: created with the admin key for no user")
    language: str | None
    created_at: dt.datetime
    started_at: dt.datetime | None
    ended_at: dt.datetime | None


class _WebhookEvent(BaseModel):
    id: str = Field(description="Event id, also in Transcriber-Event-Id: dedupe on it")
    created_at: dt.datetime
    space_id: str


class SessionLiveData(BaseModel):
    session: WebhookSessionData


class SessionLiveEvent(_WebhookEvent):
    """The first participant joined: the session is LIVE."""

    type: Literal["session.live"]
    data: SessionLiveData


class SessionEndedData(BaseModel):
    session: WebhookSessionData
    reason: str = Field(description="ended_by_api, room_finished or inactive")


class SessionEndedEvent(_WebhookEvent):
    """The session ENDED (transcription stops; the transcript follows with transcript.ready)."""

    type: Literal["session.ended"]
    data: SessionEndedData


class TranscriptReadyData(BaseModel):
    session: WebhookSessionData
    complete: bool = Field(
        description="true: the bot reported every final stored; false: it never reported "
        "(it died) and WEBHOOK_TRANSCRIPT_READY_TIMEOUT_MINUTES passed"
    )
    segment_count: int
    duration_ms: int = Field(description="End of the last segment on the session's timeline")
    transcript_url: str = Field(description="GET it for the transcript (any format)")


class TranscriptReadyEvent(_WebhookEvent):
    """The session ended and all its final segments are stored."""

    type: Literal["transcript.ready"]
    data: TranscriptReadyData


class WebhookUsageTotals(BaseModel):
    currency: str
    tracks: int
    audio_seconds: Decimal
    speech_seconds: Decimal
    final_count: int
    billed_minutes: int
    total_cost: Decimal


class UsageUpdatedData(BaseModel):
    session: WebhookSessionData
    usage_url: str
    totals: list[WebhookUsageTotals] = Field(description="One entry per currency")


class UsageUpdatedEvent(_WebhookEvent):
    """The session's final usage and cost (sent right after transcript.ready)."""

    type: Literal["usage.updated"]
    data: UsageUpdatedData
