"""indexes for the audit trail's retention (SPEC §12)

Revision ID: 0014_limits
Revises: 0013_credentials

Retention deletes each event type's oldest events first, a batch at a time
(events/retention.py): an index on ``connection_events (type, created_at)`` finds them without
reading the table, and one on ``webhook_deliveries.event_id`` tells whether an event still has
a delivery pending. On a large
PostgreSQL table, create the first beforehand without blocking writes
(``CREATE INDEX CONCURRENTLY ix_connection_events_type_created ON connection_events (type,
created_at)``):
this migration then skips it.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0014_limits"
down_revision: str | None = "0013_credentials"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_connection_events_type_created",
        "connection_events",
        ["type", "created_at"],
        if_not_exists=True,
    )
    op.create_index(
        "ix_webhook_deliveries_event", "webhook_deliveries", ["event_id"], if_not_exists=True
    )


def downgrade() -> None:
    op.drop_index("ix_webhook_deliveries_event", table_name="webhook_deliveries")
    op.drop_index("ix_connection_events_type_created", table_name="connection_events")
