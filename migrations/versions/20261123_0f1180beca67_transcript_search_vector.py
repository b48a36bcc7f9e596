"""full-text search vector on segments (russian config: Russian + English stemming)

Revision ID: 0f1180beca67
Revises: 3e10214e6c0b
Create Date: 2026-11-23 09:22:00+00:00

A stored generated column, so a search never re-parses text. No GIN index: the API searches
within one session, which the (session_id, start_ms, id) index narrows to a few thousand rows
(see store/transcripts.py, transcript_page).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0f1180beca67"
down_revision: str | Sequence[str] | None = "3e10214e6c0b"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "segments",
        sa.Column(
            "search_vector",
            postgresql.TSVECTOR(),
            sa.Computed("to_tsvector('russian'::regconfig, text)", persisted=True),
            nullable=False,
        ),
    )


def downgrade() -> None:
    op.drop_column("segments", "search_vector")
