"""issuers an organization trusts for RFC 8693 token exchange

Revision ID: 0011t
Revises: 0010
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import personal_connectors.models.base

revision: str = "0011t"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "trusted_issuers",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("organization_id", sa.String(length=40), nullable=False),
        sa.Column("issuer", sa.Text(), nullable=False),
        sa.Column("audience", sa.String(length=500), nullable=False),
        sa.Column("jwks_uri", sa.Text(), nullable=True),
        sa.Column("subject_claim", sa.String(length=100), nullable=False),
        sa.Column("end_user_prefix", sa.String(length=64), nullable=True),
        sa.Column(
            "created_at", personal_connectors.models.base.UTCDateTime(timezone=True), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_trusted_issuers_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_trusted_issuers")),
        sa.UniqueConstraint(
            "organization_id", "issuer", name=op.f("uq_trusted_issuers_organization_id_issuer")
        ),
    )
    with op.batch_alter_table("trusted_issuers", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_trusted_issuers_organization_id"), ["organization_id"], unique=False
        )


def downgrade() -> None:
    op.drop_table("trusted_issuers")
