"""track recordings: the audio of diarized tracks kept for the after-meeting pass, and how long
a space keeps it

Revision ID: 7d1207000009
Revises: 7d1207000007
Create Date: 2026-12-07 18:40:00+00:00

* ``track_recordings``: one row per recorded track stream (the bot's 16 kHz int16 PCM file on
  its disk, where the stream starts on the session timeline, and where the after-meeting pass
  stands: recording -> ready -> diarizing -> diarized | failed); deleted with its session.
* ``space_retention.recording_days``: keep recordings that many days (NULL: delete the audio
  as soon as the after-meeting pass is done).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "7d1207000009"
down_revision: str | Sequence[str] | None = "7d1207000007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "track_recordings",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("session_id", sa.BigInteger(), nullable=False),
        sa.Column("participant_identity", sa.String(256), nullable=False),
        sa.Column("track_sid", sa.String(64), nullable=False),
        sa.Column("worker_id", sa.String(128), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("offset_ms", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(16), server_default="recording", nullable=False),
        sa.Column("bytes", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("created_at", TZ, server_default=sa.text("now()"), nullable=False),
        sa.Column("claimed_at", TZ, nullable=True),
        sa.Column("finished_at", TZ, nullable=True),
        sa.Column("audio_deleted_at", TZ, nullable=True),
        sa.CheckConstraint(
            "status IN ('recording', 'ready', 'diarizing', 'diarized', 'failed')",
            name=op.f("ck_track_recordings_status"),
        ),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["sessions.id"],
            name=op.f("fk_track_recordings_session_id_sessions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_track_recordings")),
    )
    op.create_index("ix_track_recordings_session_id", "track_recordings", ["session_id"])
    # the after-meeting pass's queue: rows still to diarize
    op.create_index(
        "ix_track_recordings_pending",
        "track_recordings",
        ["status", "created_at"],
        postgresql_where=sa.text("status IN ('recording', 'ready', 'diarizing')"),
    )
    op.add_column("space_retention", sa.Column("recording_days", sa.Integer(), nullable=True))
    op.create_check_constraint(
        op.f("ck_space_retention_recording_days"),
        "space_retention",
        "recording_days IS NULL OR recording_days >= 1",
    )


def downgrade() -> None:
    op.drop_constraint(op.f("ck_space_retention_recording_days"), "space_retention", type_="check")
    op.drop_column("space_retention", "recording_days")
    op.drop_index("ix_track_recordings_pending", table_name="track_recordings")
    op.drop_index("ix_track_recordings_session_id", table_name="track_recordings")
    op.drop_table("track_recordings")
