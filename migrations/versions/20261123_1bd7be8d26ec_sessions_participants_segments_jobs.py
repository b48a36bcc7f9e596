"""sessions, participants, segments, transcription jobs

Revision ID: 1bd7be8d26ec
Revises:
Create Date: 2026-11-23 09:20:00+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "1bd7be8d26ec"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TZ = sa.DateTime(timezone=True)


def _id() -> sa.Column[int]:
    return sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False)


def upgrade() -> None:
    op.create_table(
        "sessions",
        _id(),
        sa.Column("slug", sa.String(64), nullable=False),
        sa.Column("title", sa.String(500), server_default="", nullable=False),
        sa.Column("space_id", sa.String(64), nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("status", sa.String(16), server_default="CREATED", nullable=False),
        sa.Column("language", sa.String(16), nullable=True),
        sa.Column("created_at", TZ, server_default=sa.func.now(), nullable=False),
        sa.Column("started_at", TZ, nullable=True),
        sa.Column("ended_at", TZ, nullable=True),
        sa.Column("last_activity_at", TZ, server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_sessions"),
        sa.UniqueConstraint("slug", name="uq_sessions_slug"),
        sa.CheckConstraint(
            "status IN ('CREATED', 'LIVE', 'ENDED', 'EXPIRED')",
            name=op.f("ck_sessions_session_status"),
        ),
        sa.CheckConstraint(
            "status <> 'LIVE' OR started_at IS NOT NULL",
            name=op.f("ck_sessions_live_has_started_at"),
        ),
        sa.CheckConstraint(
            "status <> 'ENDED' OR ended_at IS NOT NULL", name=op.f("ck_sessions_ended_has_ended_at")
        ),
    )
    op.create_index("ix_sessions_space_id_created_at", "sessions", ["space_id", "created_at", "id"])
    op.create_index(
        "ix_sessions_created_by_created_at", "sessions", ["created_by", "created_at", "id"]
    )
    op.create_index(
        "ix_sessions_live_last_activity_at",
        "sessions",
        ["last_activity_at"],
        postgresql_where=sa.text("status = 'LIVE'"),
    )
    op.create_index(
        "ix_sessions_created_created_at",
        "sessions",
        ["created_at"],
        postgresql_where=sa.text("status = 'CREATED'"),
    )

    op.create_table(
        "participants",
        _id(),
        sa.Column("session_id", sa.BigInteger(), nullable=False),
        sa.Column("identity", sa.String(256), nullable=False),
        sa.Column("name", sa.String(256), server_default="", nullable=False),
        sa.Column("user_id", sa.String(128), nullable=True),
        sa.Column("role", sa.String(16), server_default="GUEST", nullable=False),
        sa.Column("joined_at", TZ, server_default=sa.func.now(), nullable=False),
        sa.Column("left_at", TZ, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_participants"),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["sessions.id"],
            name="fk_participants_session_id_sessions",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint("session_id", "identity", name="uq_participants_session_id_identity"),
        sa.CheckConstraint(
            "role IN ('HOST', 'GUEST')", name=op.f("ck_participants_participant_role")
        ),
    )

    op.create_table(
        "segments",
        _id(),
        sa.Column("session_id", sa.BigInteger(), nullable=False),
        sa.Column("participant_id", sa.BigInteger(), nullable=True),
        sa.Column("utterance_id", sa.String(128), nullable=False),
        sa.Column("track_sid", sa.String(64), nullable=False),
        sa.Column("speaker_label", sa.String(256), server_default="", nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("language", sa.String(16), nullable=True),
        sa.Column("start_ms", sa.BigInteger(), nullable=False),
        sa.Column("end_ms", sa.BigInteger(), nullable=False),
        sa.Column("started_at", TZ, nullable=True),
        sa.Column("ended_at", TZ, nullable=True),
        sa.Column("words", postgresql.JSONB(), nullable=True),
        sa.Column("confidence", sa.Float(), nullable=True),
        sa.Column("model", sa.String(128), server_default="", nullable=False),
        sa.Column("created_at", TZ, server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", TZ, server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_segments"),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["sessions.id"],
            name="fk_segments_session_id_sessions",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["participant_id"],
            ["participants.id"],
            name="fk_segments_participant_id_participants",
            ondelete="SET NULL",
        ),
        sa.UniqueConstraint(
            "session_id", "utterance_id", name="uq_segments_session_id_utterance_id"
        ),
        sa.CheckConstraint(
            "start_ms >= 0 AND end_ms >= start_ms", name=op.f("ck_segments_timeline")
        ),
        sa.CheckConstraint(
            "confidence IS NULL OR (confidence >= 0 AND confidence <= 1)",
            name=op.f("ck_segments_conf"),
        ),
    )
    op.create_index("ix_segments_session_id_start_ms", "segments", ["session_id", "start_ms", "id"])
    op.create_index("ix_segments_participant_id", "segments", ["participant_id"])

    op.create_table(
        "transcription_jobs",
        _id(),
        sa.Column("session_id", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(16), server_default="REQUESTED", nullable=False),
        sa.Column("worker_id", sa.String(128), nullable=True),
        sa.Column("lease_expires_at", TZ, nullable=True),
        sa.Column("heartbeat_at", TZ, nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("requested_at", TZ, server_default=sa.func.now(), nullable=False),
        sa.Column("claimed_at", TZ, nullable=True),
        sa.Column("stopped_at", TZ, nullable=True),
        sa.Column("stop_reason", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_transcription_jobs"),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["sessions.id"],
            name="fk_transcription_jobs_session_id_sessions",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint("session_id", name="uq_transcription_jobs_session_id"),
        sa.CheckConstraint(
            "status IN ('REQUESTED', 'RUNNING', 'STOPPED')",
            name=op.f("ck_transcription_jobs_job_status"),
        ),
        sa.CheckConstraint(
            "status <> 'RUNNING' OR (worker_id IS NOT NULL AND lease_expires_at IS NOT NULL)",
            name=op.f("ck_transcription_jobs_running_is_leased"),
        ),
        sa.CheckConstraint("attempts >= 0", name=op.f("ck_transcription_jobs_attempts")),
    )
    op.create_index(
        "ix_transcription_jobs_requested_at",
        "transcription_jobs",
        ["requested_at"],
        postgresql_where=sa.text("status = 'REQUESTED'"),
    )
    op.create_index(
        "ix_transcription_jobs_lease_expires_at",
        "transcription_jobs",
        ["lease_expires_at"],
        postgresql_where=sa.text("status = 'RUNNING'"),
    )


def downgrade() -> None:
    op.drop_table("transcription_jobs")
    op.drop_table("segments")
    op.drop_table("participants")
    op.drop_table("sessions")
