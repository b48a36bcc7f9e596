"""track usage (billing per participant track) and per-space quotas

Revision ID: 3e10214e6c0b
Revises: 1bd7be8d26ec
Create Date: 2026-11-23 09:21:00+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "3e10214e6c0b"
down_revision: str | Sequence[str] | None = "1bd7be8d26ec"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "track_usage",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("session_id", sa.BigInteger(), nullable=True),
        sa.Column("participant_id", sa.BigInteger(), nullable=True),
        sa.Column("space_id", sa.String(64), nullable=False),
        sa.Column("user_id", sa.String(128), nullable=True),
        sa.Column("track_sid", sa.String(64), nullable=False),
        sa.Column("model", sa.String(128), server_default="", nullable=False),
        sa.Column("audio_seconds", sa.Numeric(14, 3), server_default="0", nullable=False),
        sa.Column("speech_seconds", sa.Numeric(14, 3), server_default="0", nullable=False),
        sa.Column("partial_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("final_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("error_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column(
            "billed_minutes",
            sa.Integer(),
            sa.Computed("(ceil(audio_seconds / 60))::integer", persisted=True),
            nullable=False,
        ),
        sa.Column("cost_per_minute", sa.Numeric(12, 6), nullable=False),
        sa.Column(
            "total_cost",
            sa.Numeric(18, 6),
            sa.Computed("ceil(audio_seconds / 60) * cost_per_minute", persisted=True),
            nullable=False,
        ),
        sa.Column("currency", sa.String(3), server_default="USD", nullable=False),
        sa.Column("started_at", TZ, server_default=sa.func.now(), nullable=False),
        sa.Column("ended_at", TZ, nullable=True),
        sa.Column("updated_at", TZ, server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_track_usage"),
        # billing history outlives a deleted session: the links become NULL, the row stays
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["sessions.id"],
            name="fk_track_usage_session_id_sessions",
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["participant_id"],
            ["participants.id"],
            name="fk_track_usage_participant_id_participants",
            ondelete="SET NULL",
        ),
        sa.UniqueConstraint("session_id", "track_sid", name="uq_track_usage_session_id_track_sid"),
        sa.CheckConstraint(
            "audio_seconds >= 0 AND speech_seconds >= 0 AND partial_count >= 0"
            " AND final_count >= 0 AND error_count >= 0",
            name=op.f("ck_track_usage_non_negative"),
        ),
        sa.CheckConstraint("cost_per_minute >= 0", name=op.f("ck_track_usage_price")),
        sa.CheckConstraint("currency ~ '^[A-Z]{3}$'", name=op.f("ck_track_usage_currency")),
    )
    op.create_index("ix_track_usage_space_id_started_at", "track_usage", ["space_id", "started_at"])
    op.create_index(
        "ix_track_usage_user_id_started_at",
        "track_usage",
        ["user_id", "started_at"],
        postgresql_where=sa.text("user_id IS NOT NULL"),
    )
    op.create_index("ix_track_usage_participant_id", "track_usage", ["participant_id"])
    op.create_index(
        "ix_track_usage_active_session_id",
        "track_usage",
        ["session_id"],
        postgresql_where=sa.text("ended_at IS NULL"),
    )
    op.create_index(
        "ix_track_usage_active_user_id",
        "track_usage",
        ["user_id"],
        postgresql_where=sa.text("ended_at IS NULL AND user_id IS NOT NULL"),
    )

    op.create_table(
        "space_quotas",
        sa.Column("space_id", sa.String(64), nullable=False),
        sa.Column("monthly_minutes", sa.Integer(), nullable=True),
        sa.Column("updated_at", TZ, server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("space_id", name="pk_space_quotas"),
        sa.CheckConstraint(
            "monthly_minutes IS NULL OR monthly_minutes >= 0", name=op.f("ck_space_quotas_minutes")
        ),
    )


def downgrade() -> None:
    op.drop_table("space_quotas")
    op.drop_table("track_usage")
