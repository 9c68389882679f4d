"""refresh reliability: token lifetimes, attempts whose outcome is unknown, lease owner index

Revision ID: 0007
Revises: 0006
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import personal_connectors.models.base

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TIMES = ("token_issued_at", "refresh_due_at", "refresh_attempt_at", "rotation_uncertain_since")


def upgrade() -> None:
    with op.batch_alter_table("connections") as batch_op:
        for name in _TIMES:
            batch_op.add_column(
                sa.Column(
                    name,
                    personal_connectors.models.base.UTCDateTime(timezone=True),
                    nullable=True,
                )
            )
        batch_op.create_index(
            "ix_connections_refresh_lease_owner", ["refresh_lease_owner"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("connections") as batch_op:
        batch_op.drop_index("ix_connections_refresh_lease_owner")
        for name in reversed(_TIMES):
            batch_op.drop_column(name)
