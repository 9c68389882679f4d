"""device authorization and pushed authorization on flows

Revision ID: 0005
Revises: 0004

RFC 8628 flows keep their sealed device code and polling schedule on the flow row; an
incremental authorization names the connection it extends. PAR (RFC 9126) needs no column:
the pushed request lives at the provider, the flow row is the same as a redirect flow's.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import personal_connectors.models.base

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("flows") as batch_op:
        batch_op.add_column(
            sa.Column(
                "grant_type",
                sa.String(length=30),
                nullable=False,
                server_default="authorization_code",
            )
        )
        batch_op.add_column(sa.Column("device_code_ct", sa.LargeBinary(), nullable=True))
        batch_op.add_column(sa.Column("poll_interval", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column(
                "next_poll_at",
                personal_connectors.models.base.UTCDateTime(timezone=True),
                nullable=True,
            )
        )
        batch_op.add_column(sa.Column("extends_connection_id", sa.String(length=40), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("flows") as batch_op:
        batch_op.drop_column("extends_connection_id")
        batch_op.drop_column("next_poll_at")
        batch_op.drop_column("poll_interval")
        batch_op.drop_column("device_code_ct")
        batch_op.drop_column("grant_type")
