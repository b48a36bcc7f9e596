"""language-aware search served by a GIN index; per-space retention policy

Revision ID: 7d1207000006
Revises: 7d1207000004
Create Date: 2026-12-07 15:00:00+00:00

* ``segments.search_config``: the text search configuration of the segment (``english``,
  ``russian`` or ``simple``), picked when the segment is stored from the session's language, else
  the segment's detected one; ``search_vector`` is now generated with it, and a GIN index serves
  every search (the former per-session ILIKE scan and its cross-session variant read every row:
  514 ms for one query on a million segments).
* ``space_retention``: how long a space keeps transcripts after its sessions end;
  ``sessions.transcript_purged_at`` records that the retention sweeper deleted a session's text.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "7d1207000006"
down_revision: str | Sequence[str] | None = "7d1207000004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column(
        "segments",
        sa.Column(
            "search_config",
            postgresql.REGCONFIG(),
            server_default=sa.text("'simple'::regconfig"),
            nullable=False,
        ),
    )
    op.execute(
        """
        UPDATE segments AS g
        SET search_config = CASE
            WHEN lower(coalesce(s.language, g.language, '')) ~ '^en([-_]|$)' THEN 'english'
            WHEN lower(coalesce(s.language, g.language, '')) ~ '^ru([-_]|$)' THEN 'russian'
            ELSE 'simple' END::regconfig
        FROM sessions AS s
        WHERE s.id = g.session_id
        """
    )
    op.drop_column("segments", "search_vector")
    op.add_column(
        "segments",
        sa.Column(
            "search_vector",
            postgresql.TSVECTOR(),
            sa.Computed("to_tsvector(search_config, text)", persisted=True),
            nullable=False,
        ),
    )
    op.create_index(
        "ix_segments_search_vector",
        "segments",
        ["search_vector"],
        postgresql_using="gin",
    )

    op.create_table(
        "space_retention",
        sa.Column("space_id", sa.String(64), nullable=False),
        sa.Column("transcript_days", sa.Integer(), nullable=True),
        sa.Column("updated_at", TZ, server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(
            "transcript_days IS NULL OR transcript_days >= 1",
            name=op.f("ck_space_retention_days"),
        ),
        sa.PrimaryKeyConstraint("space_id", name=op.f("pk_space_retention")),
    )
    op.add_column("sessions", sa.Column("transcript_purged_at", TZ, nullable=True))
    # the retention sweeper: ended sessions whose text is still there, oldest first, per space
    op.create_index(
        "ix_sessions_unpurged_space_id_ended_at",
        "sessions",
        ["space_id", "ended_at"],
        postgresql_where=sa.text("transcript_purged_at IS NULL AND ended_at IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_sessions_unpurged_space_id_ended_at", table_name="sessions")
    op.drop_column("sessions", "transcript_purged_at")
    op.drop_table("space_retention")
    op.drop_index("ix_segments_search_vector", table_name="segments")
    op.drop_column("segments", "search_vector")
    op.drop_column("segments", "search_config")
    op.add_column(
        "segments",
        sa.Column(
            "search_vector",
            postgresql.TSVECTOR(),
            sa.Computed("to_tsvector('russian'::regconfig, text)", persisted=True),
            nullable=False,
        ),
    )
