"""service and exchange API keys, and the end users a service key acts for (SPEC §8)

Revision ID: 0012
Revises: 0011b

API keys gain a ``kind`` (existing keys are user keys) and, for service and exchange keys, the
organization they belong to instead of a user. ``end_users`` maps a platform's own user id to an
internal user (no email of its own, hence ``users.email`` becomes nullable) that owns its
connections as a member does.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import personal_connectors.models.base

revision: str = "0012"
down_revision: str | None = "0011b"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC_DATETIME = personal_connectors.models.base.UTCDateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("users") as batch_op:
        batch_op.alter_column("email", existing_type=sa.String(length=320), nullable=True)
    with op.batch_alter_table("api_keys") as batch_op:
        batch_op.add_column(
            sa.Column("kind", sa.String(length=20), nullable=False, server_default="user")
        )
        batch_op.add_column(sa.Column("organization_id", sa.String(length=40), nullable=True))
        batch_op.alter_column("user_id", existing_type=sa.String(length=40), nullable=True)
        batch_op.create_foreign_key(
            batch_op.f("fk_api_keys_organization_id_organizations"),
            "organizations",
            ["organization_id"],
            ["id"],
            ondelete="CASCADE",
        )
        batch_op.create_index(
            batch_op.f("ix_api_keys_organization_id"), ["organization_id"], unique=False
        )
    op.create_table(
        "end_users",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("organization_id", sa.String(length=40), nullable=False),
        sa.Column("external_id", sa.String(length=128), nullable=False),
        sa.Column("user_id", sa.String(length=40), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("display_name", sa.String(length=200), nullable=True),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.Column("updated_at", UTC_DATETIME, nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_end_users_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_end_users_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_end_users")),
        sa.UniqueConstraint(
            "organization_id", "external_id", name=op.f("uq_end_users_organization_id_external_id")
        ),
        sa.UniqueConstraint("user_id", name=op.f("uq_end_users_user_id")),
    )


def downgrade() -> None:
    # End users' internal users and organization keys have no place in the older schema.
    op.drop_table("end_users")
    op.execute("DELETE FROM users WHERE email IS NULL")
    op.execute("DELETE FROM api_keys WHERE user_id IS NULL")
    with op.batch_alter_table("api_keys") as batch_op:
        batch_op.drop_index(batch_op.f("ix_api_keys_organization_id"))
        batch_op.drop_constraint(
            batch_op.f("fk_api_keys_organization_id_organizations"), type_="foreignkey"
        )
        batch_op.alter_column("user_id", existing_type=sa.String(length=40), nullable=False)
        batch_op.drop_column("organization_id")
        batch_op.drop_column("kind")
    with op.batch_alter_table("users") as batch_op:
        batch_op.alter_column("email", existing_type=sa.String(length=320), nullable=False)
