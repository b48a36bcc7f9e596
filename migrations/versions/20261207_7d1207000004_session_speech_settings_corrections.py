"""per-session speech settings, per-space settings, segment corrections

Revision ID: 7d1207000004
Revises: 0f1180beca67
Create Date: 2026-12-07 15:00:00+00:00

* ``sessions``: ``hotwords``, ``initial_prompt``, ``asr_model`` (NULL: the worker's default
  model) and ``diarization`` (off/on/auto), read by the bot when a track's pipeline starts.
* ``space_settings``: per-space switches; ``participants_may_end`` lets any participant of a
  session end it.
* ``segments``: ``original_text``, ``corrected_by``, ``corrected_at`` of a corrected final. The
  generated ``search_vector`` follows ``text``, so a correction is searchable at once.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "7d1207000004"
down_revision: str | Sequence[str] | None = "0f1180beca67"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("sessions", sa.Column("hotwords", sa.Text(), nullable=True))
    op.add_column("sessions", sa.Column("initial_prompt", sa.Text(), nullable=True))
    op.add_column("sessions", sa.Column("asr_model", sa.String(length=128), nullable=True))
    op.add_column(
        "sessions",
        sa.Column("diarization", sa.String(length=16), server_default="off", nullable=False),
    )
    op.create_check_constraint(
        op.f("ck_sessions_diarization"), "sessions", "diarization IN ('off', 'on', 'auto')"
    )
    op.create_table(
        "space_settings",
        sa.Column("space_id", sa.String(length=64), nullable=False),
        sa.Column(
            "participants_may_end", sa.Boolean(), server_default=sa.text("false"), nullable=False
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("space_id", name="pk_space_settings"),
    )
    op.add_column("segments", sa.Column("original_text", sa.Text(), nullable=True))
    op.add_column("segments", sa.Column("corrected_by", sa.String(length=128), nullable=True))
    op.add_column("segments", sa.Column("corrected_at", sa.DateTime(timezone=True), nullable=True))
    op.create_check_constraint(
        op.f("ck_segments_correction"),
        "segments",
        "(original_text IS NULL) = (corrected_at IS NULL)",
    )


def downgrade() -> None:
    op.drop_constraint(op.f("ck_segments_correction"), "segments", type_="check")
    op.drop_column("segments", "corrected_at")
    op.drop_column("segments", "corrected_by")
    op.drop_column("segments", "original_text")
    op.drop_table("space_settings")
    op.drop_constraint(op.f("ck_sessions_diarization"), "sessions", type_="check")
    op.drop_column("sessions", "diarization")
    op.drop_column("sessions", "asr_model")
    op.drop_column("sessions", "initial_prompt")
    op.drop_column("sessions", "hotwords")
