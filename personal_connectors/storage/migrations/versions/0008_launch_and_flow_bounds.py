"""launched flows, completion verifiers, and indexes for bounded, indexed flow housekeeping

Revision ID: 0008
Revises: 0007

Flows gain the hash of an explicit-completion verifier and the connect page's attempt handle
(the popup's opener asks for that attempt's state); organizations gain the
``require_launched_flows`` policy. Indexes serve the purge of old flows (``created_at``), the
per-user bound on pending flows and connect sessions, so neither scans its whole table.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("flows") as batch_op:
        batch_op.add_column(
            sa.Column("require_verifier", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(sa.Column("verifier_hash", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("connect_attempt", sa.String(length=64), nullable=True))
        batch_op.create_index(batch_op.f("ix_flows_created_at"), ["created_at"], unique=False)
        batch_op.create_index(
            "ix_flows_user_pending", ["user_id", "status", "expires_at"], unique=False
        )
        batch_op.create_index(
            "ix_flows_connect_attempt", ["connect_session_id", "connect_attempt"], unique=False
        )
    with op.batch_alter_table("connect_sessions") as batch_op:
        batch_op.create_index("ix_connect_sessions_user", ["user_id", "expires_at"], unique=False)
    with op.batch_alter_table("organizations") as batch_op:
        batch_op.add_column(
            sa.Column(
                "require_launched_flows",
                sa.Boolean(),
                nullable=False,
                server_default=sa.false(),
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("organizations") as batch_op:
        batch_op.drop_column("require_launched_flows")
    with op.batch_alter_table("connect_sessions") as batch_op:
        batch_op.drop_index("ix_connect_sessions_user")
    with op.batch_alter_table("flows") as batch_op:
        batch_op.drop_index("ix_flows_connect_attempt")
        batch_op.drop_index("ix_flows_user_pending")
        batch_op.drop_index(batch_op.f("ix_flows_created_at"))
        batch_op.drop_column("connect_attempt")
        batch_op.drop_column("verifier_hash")
        batch_op.drop_column("require_verifier")
