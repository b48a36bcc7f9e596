"""SQLAlchemy 2 models: the schema the Alembic chain in ``migrations/`` creates.

Every table, constraint and index here exists in a migration; ``tests/integration/store``
compares the two after ``alembic upgrade head``. Timestamps are ``timestamptz``; money is
``NUMERIC``.

Times on the transcript timeline (``start_ms``/``end_ms``) are milliseconds from the session's
start, so segments of different tracks sort into one transcript; wall-clock times are separate.
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar, Final

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Computed,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Identity,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, REGCONFIG, TSVECTOR
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from store.enums import (
    DeliveryStatus,
    DiarizationMode,
    JobStatus,
    ParticipantRole,
    RecordingStatus,
    SessionStatus,
    TranscriptVersion,
)

__all__ = [
    "SEARCH_CONFIGS",
    "Base",
    "Participant",
    "Segment",
    "Session",
    "SpaceQuota",
    "SpaceRetention",
    "SpaceSettings",
    "SpeakerName",
    "TrackRecording",
    "TrackUsage",
    "TranscriptionJob",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookEndpoint",
    "WebhookEvent",
]

# Text search configurations of ``segments.search_vector``, one per segment (``search_config``):
# ``english`` for English, ``russian`` for Russian (it also stems ASCII words with the English
# stemmer), ``simple`` (no stemming, no stop words) for any other or unknown language. The
# session's language picks it, else the segment's detected language (store.transcripts).
SEARCH_CONFIGS = ("english", "russian", "simple")
_LANGUAGE_CONFIG: Final = (
    (re.compile(r"^en([-_]|$)", re.IGNORECASE), "english"),
    (re.compile(r"^ru([-_]|$)", re.IGNORECASE), "russian"),
)


def search_config(session_language: str | None, segment_language: str | None) -> str:
    """The text search configuration of a segment: the session's language when it has one, else
    the segment's detected language; ``english``/``russian`` for those, else ``simple``."""
    language = session_language or segment_language or ""
    for pattern, config in _LANGUAGE_CONFIG:
        if pattern.match(language):
            return config
    return "simple"


_SIMPLE_CONFIG = text("'simple'::regconfig")  # (the Segment class body shadows ``text``)

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

SLUG_LEN = 64
WEBHOOK_EVENT_ID_LEN = 128
SPACE_ID_LEN = 64
USER_ID_LEN = 128
IDENTITY_LEN = 256
NAME_LEN = 256
SPEAKER_LEN = 32
TRACK_SID_LEN = 64
MODEL_LEN = 128
LANGUAGE_LEN = 16


def _enum(
    cls: type[
        SessionStatus
        | ParticipantRole
        | JobStatus
        | DiarizationMode
        | DeliveryStatus
        | TranscriptVersion
        | RecordingStatus
    ],
    name: str,
) -> Enum:
    # VARCHAR + CHECK instead of a native ENUM type: adding a value later is a plain migration.
    return Enum(
        cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=16,
        values_callable=lambda members: [m.value for m in members],
        validate_strings=True,
    )


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: DateTime(timezone=True)}


class Session(Base):
    """A meeting: one LiveKit room, named by the slug."""

    __tablename__ = "sessions"

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    slug: Mapped[str] = mapped_column(String(SLUG_LEN), unique=True)
    title: Mapped[str] = mapped_column(String(500), server_default="")
    space_id: Mapped[str] = mapped_column(String(SPACE_ID_LEN))
    # the user who created it; NULL when the admin key created it for no user (no JWT can carry
    # NULL, so nobody owns such a session but admins)
    created_by: Mapped[str | None] = mapped_column(String(USER_ID_LEN))
    status: Mapped[SessionStatus] = mapped_column(
        _enum(SessionStatus, "session_status"), server_default=SessionStatus.CREATED.value
    )
    # BCP-47-ish language code, or NULL for automatic detection
    language: Mapped[str | None] = mapped_column(String(LANGUAGE_LEN))
    # Speech settings the bot reads when a track's pipeline starts: vocabulary for the decoder,
    # the Whisper model (NULL: the worker's default) and the diarization mode (off/on/auto).
    hotwords: Mapped[str | None] = mapped_column(Text)
    initial_prompt: Mapped[str | None] = mapped_column(Text)
    asr_model: Mapped[str | None] = mapped_column(String(MODEL_LEN))
    diarization: Mapped[DiarizationMode] = mapped_column(
        _enum(DiarizationMode, "diarization"), server_default=DiarizationMode.OFF.value
    )
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    started_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    last_activity_at: Mapped[datetime] = mapped_column(server_default=func.now())
    # when the retention sweeper deleted the session's text (segments, names, title)
    transcript_purged_at: Mapped[datetime | None]
    # set once, when the ``transcript.ready`` event is written (see store.webhooks)
    transcript_ready_at: Mapped[datetime | None]
    # which speaker labels the transcript's readers get by default: the live ones, or the
    # after-meeting diarization's (set when that pass has relabelled the stored segments)
    transcript_version: Mapped[TranscriptVersion] = mapped_column(
        _enum(TranscriptVersion, "transcript_version"),
        server_default=TranscriptVersion.LIVE.value,
    )
    diarized_at: Mapped[datetime | None]

    __table_args__ = (
        CheckConstraint("status <> 'LIVE' OR started_at IS NOT NULL", name="live_has_started_at"),
        CheckConstraint("status <> 'ENDED' OR ended_at IS NOT NULL", name="ended_has_ended_at"),
        # list sessions of a space / of a creator, newest first (keyset on created_at, id)
        Index("ix_sessions_space_id_created_at", "space_id", "created_at", "id"),
        Index("ix_sessions_created_by_created_at", "created_by", "created_at", "id"),
        # the lifecycle sweeper
        Index(
            "ix_sessions_live_last_activity_at",
            "last_activity_at",
            postgresql_where=text("status = 'LIVE'"),
        ),
        Index(
            "ix_sessions_created_created_at",
            "created_at",
            postgresql_where=text("status = 'CREATED'"),
        ),
        # the retention sweeper: ended sessions whose text is still stored, per space
        Index(
            "ix_sessions_unpurged_space_id_ended_at",
            "space_id",
            "ended_at",
            postgresql_where=text("transcript_purged_at IS NULL AND ended_at IS NOT NULL"),
        ),
    )


class Participant(Base):
    """A LiveKit participant of one session (unique per session and identity)."""

    __tablename__ = "participants"

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"))
    identity: Mapped[str] = mapped_column(String(IDENTITY_LEN))
    name: Mapped[str] = mapped_column(String(NAME_LEN), server_default="")
    user_id: Mapped[str | None] = mapped_column(String(USER_ID_LEN))
    role: Mapped[ParticipantRole] = mapped_column(
        _enum(ParticipantRole, "participant_role"), server_default=ParticipantRole.GUEST.value
    )
    joined_at: Mapped[datetime] = mapped_column(server_default=func.now())
    left_at: Mapped[datetime | None]

    __table_args__ = (UniqueConstraint("session_id", "identity"),)


class Segment(Base):
    """A final transcript segment (one utterance), unique per session and utterance id."""

    __tablename__ = "segments"

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"))
    participant_id: Mapped[int | None] = mapped_column(
        ForeignKey("participants.id", ondelete="SET NULL")
    )
    utterance_id: Mapped[str] = mapped_column(String(128))
    track_sid: Mapped[str] = mapped_column(String(TRACK_SID_LEN))
    speaker_label: Mapped[str] = mapped_column(String(NAME_LEN), server_default="")
    # In-track speaker of a diarized track ("Speaker 2"; NULL: not diarized): ``speaker`` as
    # labelled live, ``final_speaker`` by the after-meeting pass (mapped onto the live names).
    speaker: Mapped[str | None] = mapped_column(String(SPEAKER_LEN))
    final_speaker: Mapped[str | None] = mapped_column(String(SPEAKER_LEN))
    text: Mapped[str] = mapped_column(Text)
    language: Mapped[str | None] = mapped_column(String(LANGUAGE_LEN))
    start_ms: Mapped[int] = mapped_column(BigInteger)
    end_ms: Mapped[int] = mapped_column(BigInteger)
    started_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    # [{"word": str, "start_ms": int, "end_ms": int, "probability": float}, ...]
    words: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONB)
    confidence: Mapped[float | None] = mapped_column(Float)
    model: Mapped[str] = mapped_column(String(MODEL_LEN), server_default="")
    # A corrected final: ``text`` is the correction, ``original_text`` what the bot decoded.
    original_text: Mapped[str | None] = mapped_column(Text)
    corrected_by: Mapped[str | None] = mapped_column(String(USER_ID_LEN))
    corrected_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())
    # one of SEARCH_CONFIGS, set when the segment is stored
    search_config: Mapped[str] = mapped_column(REGCONFIG, server_default=_SIMPLE_CONFIG)
    search_vector: Mapped[str] = mapped_column(
        TSVECTOR, Computed("to_tsvector(search_config, text)", persisted=True)
    )

    __table_args__ = (
        UniqueConstraint("session_id", "utterance_id"),
        CheckConstraint("start_ms >= 0 AND end_ms >= start_ms", name="timeline"),
        CheckConstraint("confidence IS NULL OR (confidence >= 0 AND confidence <= 1)", name="conf"),
        CheckConstraint("(original_text IS NULL) = (corrected_at IS NULL)", name="correction"),
        # transcript pages, exports and search: one session's segments in timeline order
        Index("ix_segments_session_id_start_ms", "session_id", "start_ms", "id"),
        # ON DELETE SET NULL from participants looks segments up by participant
        Index("ix_segments_participant_id", "participant_id"),
        # every search, in one session or across a space (store.transcripts)
        Index("ix_segments_search_vector", "search_vector", postgresql_using="gin"),
    )


class TrackUsage(Base):
    """Usage and cost of one transcribed participant track.

    ``billed_minutes`` and ``total_cost`` are generated by PostgreSQL from ``audio_seconds`` and
    ``cost_per_minute`` (the price when the track started), so they can never disagree.
    ``space_id`` and ``user_id`` are copied from the session and participant: reports read one
    table, and the rows outlive a deleted session as billing history (session_id and
    participant_id then become NULL).
    """

    __tablename__ = "track_usage"

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    session_id: Mapped[int | None] = mapped_column(ForeignKey("sessions.id", ondelete="SET NULL"))
    participant_id: Mapped[int | None] = mapped_column(
        ForeignKey("participants.id", ondelete="SET NULL")
    )
    space_id: Mapped[str] = mapped_column(String(SPACE_ID_LEN))
    user_id: Mapped[str | None] = mapped_column(String(USER_ID_LEN))
    track_sid: Mapped[str] = mapped_column(String(TRACK_SID_LEN))
    model: Mapped[str] = mapped_column(String(MODEL_LEN), server_default="")
    audio_seconds: Mapped[Decimal] = mapped_column(Numeric(14, 3), server_default="0")
    speech_seconds: Mapped[Decimal] = mapped_column(Numeric(14, 3), server_default="0")
    partial_count: Mapped[int] = mapped_column(Integer, server_default="0")
    final_count: Mapped[int] = mapped_column(Integer, server_default="0")
    error_count: Mapped[int] = mapped_column(Integer, server_default="0")
    billed_minutes: Mapped[int] = mapped_column(
        Integer, Computed("(ceil(audio_seconds / 60))::integer", persisted=True)
    )
    cost_per_minute: Mapped[Decimal] = mapped_column(Numeric(12, 6))
    total_cost: Mapped[Decimal] = mapped_column(
        Numeric(18, 6), Computed("ceil(audio_seconds / 60) * cost_per_minute", persisted=True)
    )
    currency: Mapped[str] = mapped_column(String(3), server_default="USD")
    started_at: Mapped[datetime] = mapped_column(server_default=func.now())
    ended_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())

    __table_args__ = (
        UniqueConstraint("session_id", "track_sid"),
        CheckConstraint(
            "audio_seconds >= 0 AND speech_seconds >= 0 AND partial_count >= 0"
            " AND final_count >= 0 AND error_count >= 0",
            name="non_negative",
        ),
        CheckConstraint("cost_per_minute >= 0", name="price"),
        CheckConstraint("currency ~ '^[A-Z]{3}$'", name="currency"),
        # usage reports over a date range, per space and per user
        Index("ix_track_usage_space_id_started_at", "space_id", "started_at"),
        Index(
            "ix_track_usage_user_id_started_at",
            "user_id",
            "started_at",
            postgresql_where=text("user_id IS NOT NULL"),
        ),
        Index("ix_track_usage_participant_id", "participant_id"),
        # concurrency limits: tracks being transcribed now, per session and per user
        Index(
            "ix_track_usage_active_session_id",
            "session_id",
            postgresql_where=text("ended_at IS NULL"),
        ),
        Index(
            "ix_track_usage_active_user_id",
            "user_id",
            postgresql_where=text("ended_at IS NULL AND user_id IS NOT NULL"),
        ),
    )


class TranscriptionJob(Base):
    """The bot's work item for one session: requested, leased by a worker, stopped."""

    __tablename__ = "transcription_jobs"

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    session_id: Mapped[int] = mapped_column(
        ForeignKey("sessions.id", ondelete="CASCADE"), unique=True
    )
    status: Mapped[JobStatus] = mapped_column(
        _enum(JobStatus, "job_status"), server_default=JobStatus.REQUESTED.value
    )
    worker_id: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[datetime | None]
    heartbeat_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    requested_at: Mapped[datetime] = mapped_column(server_default=func.now())
    claimed_at: Mapped[datetime | None]
    stopped_at: Mapped[datetime | None]
    stop_reason: Mapped[str | None] = mapped_column(String(64))
    # the worker of claim ``finals_attempt`` left the room and every final it heard is stored
    finals_stored_at: Mapped[datetime | None]
    finals_attempt: Mapped[int | None] = mapped_column(Integer)

    __table_args__ = (
        CheckConstraint(
            "status <> 'RUNNING' OR (worker_id IS NOT NULL AND lease_expires_at IS NOT NULL)",
            name="running_is_leased",
        ),
        CheckConstraint("attempts >= 0", name="attempts"),
        # claim: oldest requested job first; reclaim: running jobs whose lease expired
        Index(
            "ix_transcription_jobs_requested_at",
            "requested_at",
            postgresql_where=text("status = 'REQUESTED'"),
        ),
        Index(
            "ix_transcription_jobs_lease_expires_at",
            "lease_expires_at",
            postgresql_where=text("status = 'RUNNING'"),
        ),
    )


class SpaceQuota(Base):
    """Per-space override of the monthly transcription quota (NULL minutes = unlimited)."""

    __tablename__ = "space_quotas"

    space_id: Mapped[str] = mapped_column(String(SPACE_ID_LEN), primary_key=True)
    monthly_minutes: Mapped[int | None] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())

    __table_args__ = (
        CheckConstraint("monthly_minutes IS NULL OR monthly_minutes >= 0", name="minutes"),
    )


class SpaceSettings(Base):
    """Per-space switches (a space without a row has the defaults)."""

    __tablename__ = "space_settings"

    space_id: Mapped[str] = mapped_column(String(SPACE_ID_LEN), primary_key=True)
    # any participant of a session may end it (otherwise: its creator or an admin)
    participants_may_end: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())


class SpaceRetention(Base):
    """How long a space keeps transcripts after a session ends (NULL days = forever)."""

    __tablename__ = "space_retention"

    space_id: Mapped[str] = mapped_column(String(SPACE_ID_LEN), primary_key=True)
    transcript_days: Mapped[int | None] = mapped_column(Integer)
    # how long track recordings are kept (NULL: deleted once the after-meeting pass is done)
    recording_days: Mapped[int | None] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())

    __table_args__ = (
        CheckConstraint("transcript_days IS NULL OR transcript_days >= 1", name="days"),
        CheckConstraint("recording_days IS NULL OR recording_days >= 1", name="recording_days"),
    )


class TrackRecording(Base):
    """The audio of one diarized track stream, kept on the bot's disk (16 kHz mono int16 PCM at
    ``path``) for the after-meeting diarization (``store.recordings``). ``offset_ms``: where its
    first sample lies on the session timeline (the segments' clock)."""

    __tablename__ = "track_recordings"

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"))
    participant_identity: Mapped[str] = mapped_column(String(IDENTITY_LEN))
    track_sid: Mapped[str] = mapped_column(String(TRACK_SID_LEN))
    worker_id: Mapped[str] = mapped_column(String(128))
    path: Mapped[str] = mapped_column(Text)
    offset_ms: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[RecordingStatus] = mapped_column(
        _enum(RecordingStatus, "status"), server_default=RecordingStatus.RECORDING.value
    )
    bytes: Mapped[int] = mapped_column(BigInteger, server_default="0")
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    claimed_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    audio_deleted_at: Mapped[datetime | None]

    __table_args__ = (
        Index("ix_track_recordings_session_id", "session_id"),
        Index(
            "ix_track_recordings_pending",
            "status",
            "created_at",
            postgresql_where=text("status IN ('recording', 'ready', 'diarizing')"),
        ),
    )


class SpeakerName(Base):
    """A name the host app gave an in-track speaker label ("Speaker 2" of a participant's
    track -> "Maria"); transcripts and exports show it instead of the label."""

    __tablename__ = "speaker_names"

    participant_id: Mapped[int] = mapped_column(
        ForeignKey("participants.id", ondelete="CASCADE"), primary_key=True
    )
    speaker: Mapped[str] = mapped_column(String(SPEAKER_LEN), primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(NAME_LEN))
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())

    __table_args__ = (Index("ix_speaker_names_session_id", "session_id"),)


class WebhookEvent(Base):
    """A LiveKit webhook event already handled, remembered until its signature expires so a
    replay of the same signed request is recognised (``store.webhooks``)."""

    __tablename__ = "webhook_events"

    event_id: Mapped[str] = mapped_column(String(WEBHOOK_EVENT_ID_LEN), primary_key=True)
    received_at: Mapped[datetime] = mapped_column(server_default=func.now())
    expires_at: Mapped[datetime]

    __table_args__ = (Index("ix_webhook_events_expires_at", "expires_at"),)


WEBHOOK_URL_LEN = 2048
WEBHOOK_ENDPOINT_ID_LEN = 32
WEBHOOK_EVENT_ID_LEN = 40
WEBHOOK_EVENT_TYPE_LEN = 32


class WebhookEndpoint(Base):
    """A host app's receiver of outbound webhooks, per space. The secrets sign deliveries (HMAC
    needs them in clear); ``previous_secret`` still signs until ``previous_secret_expires_at``
    (secret rotation). ``event_types`` NULL = every event type."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[str] = mapped_column(String(WEBHOOK_ENDPOINT_ID_LEN), primary_key=True)
    space_id: Mapped[str] = mapped_column(String(SPACE_ID_LEN))
    url: Mapped[str] = mapped_column(String(WEBHOOK_URL_LEN))
    description: Mapped[str] = mapped_column(String(500), server_default="")
    event_types: Mapped[list[str] | None] = mapped_column(JSONB(none_as_null=True))
    enabled: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    secret: Mapped[str] = mapped_column(String(128))
    previous_secret: Mapped[str | None] = mapped_column(String(128))
    previous_secret_expires_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())

    __table_args__ = (Index("ix_webhook_endpoints_space_id_created_at", "space_id", "created_at"),)


class WebhookDelivery(Base):
    """The durable outbox: one event for one endpoint, written in the transaction of the state
    change that causes it. ``body`` holds the exact bytes sent (signed per attempt).
    ``next_attempt_at`` is also the claim's lease: a claimed row is pushed past the delivery
    timeout, so a worker that dies leaves it due again (at-least-once)."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(WEBHOOK_EVENT_ID_LEN))
    endpoint_id: Mapped[str] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    space_id: Mapped[str] = mapped_column(String(SPACE_ID_LEN))
    event_type: Mapped[str] = mapped_column(String(WEBHOOK_EVENT_TYPE_LEN))
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[DeliveryStatus] = mapped_column(
        _enum(DeliveryStatus, "delivery_status"), server_default=DeliveryStatus.PENDING.value
    )
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    next_attempt_at: Mapped[datetime] = mapped_column(server_default=func.now())
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    finished_at: Mapped[datetime | None]
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(256))

    __table_args__ = (
        UniqueConstraint("event_id", "endpoint_id"),
        CheckConstraint("attempts >= 0", name="attempts"),
        # the delivery loop: due pending rows, oldest first
        Index(
            "ix_webhook_deliveries_pending_next_attempt_at",
            "next_attempt_at",
            postgresql_where=text("status = 'PENDING'"),
        ),
        # the delivery log of one endpoint, newest first
        Index("ix_webhook_deliveries_endpoint_id_id", "endpoint_id", "id"),
    )


class WebhookAttempt(Base):
    """One HTTP attempt of a delivery: the delivery log."""

    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    delivery_id: Mapped[int] = mapped_column(
        ForeignKey("webhook_deliveries.id", ondelete="CASCADE")
    )
    attempt: Mapped[int] = mapped_column(Integer)
    attempted_at: Mapped[datetime] = mapped_column(server_default=func.now())
    status_code: Mapped[int | None] = mapped_column(Integer)
    latency_ms: Mapped[int] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(String(256))

    __table_args__ = (Index("ix_webhook_attempts_delivery_id_attempt", "delivery_id", "attempt"),)
