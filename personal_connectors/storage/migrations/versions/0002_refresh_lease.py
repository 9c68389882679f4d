"""refresh lease and failure bookkeeping on connections

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import personal_connectors.models.base

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("connections") as batch_op:
        batch_op.add_column(sa.Column("refresh_lease_owner", sa.String(length=64), nullable=True))
        batch_op.add_column(
            sa.Column(
                "refresh_lease_until",
                personal_connectors.models.base.UTCDateTime(timezone=True),
                nullable=True,
            )
        )
        batch_op.add_column(
            sa.Column("refresh_failures", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(
            sa.Column(
                "last_refreshed_at",
                personal_connectors.models.base.UTCDateTime(timezone=True),
                nullable=True,
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("connections") as batch_op:
        batch_op.drop_column("last_refreshed_at")
        batch_op.drop_column("refresh_failures")
        batch_op.drop_column("refresh_lease_until")
        batch_op.drop_column("refresh_lease_owner")
