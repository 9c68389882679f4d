"""an index for the background refresher's idle claim

Revision ID: 0016_idle_refresh
Revises: 0015_custom_mcp

The refresher also claims connections whose refresh token has not been used for
``CONNECTORS_REFRESHER_IDLE_SECONDS`` (``refresher.repository.DuePolicy.idle``: last refreshed,
or created, before then). Nothing indexed that, so the claim read every connection that has a
refresh token, through the ``expires_at`` index (the claim's order). This index holds when each
connection with a refresh token was last refreshed or created, so the claim reads only the idle
ones. On a large PostgreSQL table, create it beforehand without blocking writes
(``CREATE INDEX CONCURRENTLY ix_connections_idle_since ON connections
(coalesce(last_refreshed_at, created_at)) WHERE refresh_token_ct IS NOT NULL AND deleted_at IS
NULL``): this migration then skips it.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016_idle_refresh"
down_revision: str | None = "0015_custom_mcp"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WHERE = "refresh_token_ct IS NOT NULL AND deleted_at IS NULL"


def upgrade() -> None:
    op.create_index(
        "ix_connections_idle_since",
        "connections",
        [sa.text("coalesce(last_refreshed_at, created_at)")],
        postgresql_where=sa.text(WHERE),
        sqlite_where=sa.text(WHERE),
        if_not_exists=True,
    )


def downgrade() -> None:
    op.drop_index("ix_connections_idle_since", table_name="connections")
