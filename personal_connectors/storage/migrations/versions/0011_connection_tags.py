"""tags and metadata a platform keeps on a connection

Revision ID: 0011b
Revises: 0011t
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011b"
down_revision: str | None = "0011t"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable: connections made before this revision have none, read as empty.
    with op.batch_alter_table("connections") as batch_op:
        batch_op.add_column(sa.Column("tags", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("metadata", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("connections") as batch_op:
        batch_op.drop_column("metadata")
        batch_op.drop_column("tags")
