"""apps an administrator binds to a custom MCP server

Revision ID: 0018_mcp_bound_apps
Revises: 0017_mcp_prefix

SPEC §11: instead of the service's dynamic client registration, an administrator may bind an
app registered by hand to an MCP server URL (``PUT /apps/custom_mcp``). It is kept in the same
table as the registrations, marked ``bound``. A column with a server default: instances of the
previous revision keep working beside this one.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018_mcp_bound_apps"
down_revision: str | None = "0017_mcp_prefix"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("mcp_client_registrations") as batch:
        batch.add_column(
            sa.Column("bound", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("mcp_client_registrations") as batch:
        batch.drop_column("bound")
