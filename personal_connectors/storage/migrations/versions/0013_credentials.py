"""connections made with credentials other than an authorization code (SPEC §10)

Revision ID: 0013_credentials
Revises: 0012
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013_credentials"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("connections") as batch_op:
        # Every existing connection came through an OAuth flow (or an import of one).
        batch_op.add_column(
            sa.Column("auth_mode", sa.String(40), nullable=False, server_default="oauth2")
        )
        batch_op.add_column(sa.Column("credentials_ct", sa.LargeBinary(), nullable=True))
        batch_op.add_column(sa.Column("credential_fields", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("credential_name", sa.String(255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("connections") as batch_op:
        batch_op.drop_column("credential_name")
        batch_op.drop_column("credential_fields")
        batch_op.drop_column("credentials_ct")
        batch_op.drop_column("auth_mode")
