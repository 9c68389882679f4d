"""each connection's MCP gateway tool-name prefix, kept while it lives

Revision ID: 0017_mcp_prefix
Revises: 0016_idle_refresh

SPEC §11: a prefix never changes while its connection lives. Until now it was computed on every
request from the caller's live connections, so connecting a second account of an app renamed
the first one's tools. The gateway stores it when it first offers the connection's tools. A
nullable column: instances of the previous revision keep working beside this one (they ignore
it), and rows without one get theirs at their next offer.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017_mcp_prefix"
down_revision: str | None = "0016_idle_refresh"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("connections") as batch:
        batch.add_column(sa.Column("mcp_prefix", sa.String(72), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("connections") as batch:
        batch.drop_column("mcp_prefix")
