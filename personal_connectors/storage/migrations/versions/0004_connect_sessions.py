"""connect sessions and browser-bound flows

Revision ID: 0004
Revises: 0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import personal_connectors.models.base

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "connect_sessions",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("organization_id", sa.String(length=40), nullable=False),
        sa.Column("user_id", sa.String(length=40), nullable=False),
        sa.Column("api_key_id", sa.String(length=40), nullable=False),
        sa.Column("allowed_connectors", sa.JSON(), nullable=True),
        sa.Column("return_url", sa.Text(), nullable=True),
        sa.Column(
            "expires_at", personal_connectors.models.base.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "created_at", personal_connectors.models.base.UTCDateTime(timezone=True), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_connect_sessions_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_connect_sessions_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_connect_sessions")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_connect_sessions_token_hash")),
    )
    with op.batch_alter_table("connect_sessions") as batch_op:
        batch_op.create_index(
            batch_op.f("ix_connect_sessions_expires_at"), ["expires_at"], unique=False
        )
    with op.batch_alter_table("flows") as batch_op:
        batch_op.add_column(sa.Column("binding_hash", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("launch_hash", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("launch_url_ct", sa.LargeBinary(), nullable=True))
        batch_op.add_column(sa.Column("connect_session_id", sa.String(length=40), nullable=True))
        batch_op.create_index(batch_op.f("ix_flows_binding_hash"), ["binding_hash"], unique=False)
        batch_op.create_index(batch_op.f("ix_flows_launch_hash"), ["launch_hash"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("flows") as batch_op:
        batch_op.drop_index(batch_op.f("ix_flows_launch_hash"))
        batch_op.drop_index(batch_op.f("ix_flows_binding_hash"))
        batch_op.drop_column("connect_session_id")
        batch_op.drop_column("launch_url_ct")
        batch_op.drop_column("launch_hash")
        batch_op.drop_column("binding_hash")
    with op.batch_alter_table("connect_sessions") as batch_op:
        batch_op.drop_index(batch_op.f("ix_connect_sessions_expires_at"))
    op.drop_table("connect_sessions")
