"""sessions.created_by nullable (no owner for service-created sessions); webhook_events

Revision ID: 7d1207000001
Revises: 7d1207000006
Create Date: 2026-12-07 15:00:00+00:00

Sessions the admin key created for no user were owned by the user id ``service``, which any JWT
with ``sub=service`` could carry: they become owner-less (NULL). ``webhook_events`` remembers
each LiveKit webhook event id until its signature expires, so a replayed webhook is a no-op.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "7d1207000001"
down_revision: str | Sequence[str] | None = "7d1207000006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.alter_column("sessions", "created_by", existing_type=sa.String(128), nullable=True)
    op.execute("UPDATE sessions SET created_by = NULL WHERE created_by = 'service'")
    op.create_table(
        "webhook_events",
        sa.Column("event_id", sa.String(128), nullable=False),
        sa.Column(
            "received_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name="pk_webhook_events"),
    )
    op.create_index("ix_webhook_events_expires_at", "webhook_events", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_webhook_events_expires_at", table_name="webhook_events")
    op.drop_table("webhook_events")
    op.execute("UPDATE sessions SET created_by = 'service' WHERE created_by IS NULL")
    op.alter_column("sessions", "created_by", existing_type=sa.String(128), nullable=False)
