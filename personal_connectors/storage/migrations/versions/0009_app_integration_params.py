"""integration parameters an owner or admin sets on an OAuth app (issuer hosts and the like)

Revision ID: 0009
Revises: 0008
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("oauth_apps") as batch:
        batch.add_column(sa.Column("integration_params", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("oauth_apps") as batch:
        batch.drop_column("integration_params")
