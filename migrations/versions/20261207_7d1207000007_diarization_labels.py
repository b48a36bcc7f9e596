"""diarization labels: each segment's in-track speaker (live and after the meeting), the
session's transcript version, and the names a host app gives speaker labels

Revision ID: 7d1207000007
Revises: 7d1207000005
Create Date: 2026-12-07 18:30:00+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "7d1207000007"
down_revision: str | Sequence[str] | None = "7d1207000005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column(
        "sessions",
        sa.Column("transcript_version", sa.String(16), server_default="live", nullable=False),
    )
    op.create_check_constraint(
        op.f("ck_sessions_transcript_version"),
        "sessions",
        "transcript_version IN ('live', 'final')",
    )
    op.add_column("sessions", sa.Column("diarized_at", TZ, nullable=True))
    op.add_column("segments", sa.Column("speaker", sa.String(32), nullable=True))
    op.add_column("segments", sa.Column("final_speaker", sa.String(32), nullable=True))
    op.create_table(
        "speaker_names",
        sa.Column("participant_id", sa.BigInteger(), nullable=False),
        sa.Column("speaker", sa.String(32), nullable=False),
        sa.Column("session_id", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("updated_at", TZ, server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["participant_id"],
            ["participants.id"],
            name=op.f("fk_speaker_names_participant_id_participants"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["sessions.id"],
            name=op.f("fk_speaker_names_session_id_sessions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("participant_id", "speaker", name=op.f("pk_speaker_names")),
    )
    op.create_index("ix_speaker_names_session_id", "speaker_names", ["session_id"])


def downgrade() -> None:
    op.drop_index("ix_speaker_names_session_id", table_name="speaker_names")
    op.drop_table("speaker_names")
    op.drop_column("segments", "final_speaker")
    op.drop_column("segments", "speaker")
    op.drop_column("sessions", "diarized_at")
    op.drop_constraint(op.f("ck_sessions_transcript_version"), "sessions", type_="check")
    op.drop_column("sessions", "transcript_version")
