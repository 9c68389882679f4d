"""custom MCP servers (SPEC §11): client registrations, and the server on connections and flows

Revision ID: 0015_custom_mcp
Revises: 0014_limits

``mcp_client_registrations`` keeps the service's RFC 7591 registration per organization and
MCP server (the client secret sealed). A connection or flow of a custom server carries the
server's URL, its display name and the registration it uses; such a flow has no OAuth app.
A custom server's connection is unique per user, server and account (two servers may share an
authorization server and so the subject), so the live-account index leaves those rows to a
second one.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from personal_connectors.models.base import UTCDateTime

revision: str = "0015_custom_mcp"
down_revision: str | None = "0014_limits"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

URL_LENGTH = 1000


def upgrade() -> None:
    op.create_table(
        "mcp_client_registrations",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("organization_id", sa.String(length=40), nullable=False),
        sa.Column("server_url", sa.String(length=URL_LENGTH), nullable=False),
        sa.Column("issuer", sa.Text(), nullable=False),
        sa.Column("authorization_endpoint", sa.Text(), nullable=False),
        sa.Column("token_endpoint", sa.Text(), nullable=False),
        sa.Column("revocation_endpoint", sa.Text(), nullable=True),
        sa.Column("jwks_uri", sa.Text(), nullable=True),
        sa.Column("iss_parameter_supported", sa.Boolean(), nullable=False),
        sa.Column("token_endpoint_auth_method", sa.String(length=40), nullable=False),
        sa.Column("client_id", sa.String(length=500), nullable=False),
        sa.Column("client_secret_ct", sa.LargeBinary(), nullable=False),
        sa.Column("key_id", sa.String(length=32), nullable=False),
        sa.Column("client_secret_expires_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_mcp_client_registrations_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mcp_client_registrations")),
    )
    op.create_index(
        "uq_mcp_client_registrations_org_server",
        "mcp_client_registrations",
        ["organization_id", "server_url"],
        unique=True,
    )
    with op.batch_alter_table("connections") as batch_op:
        batch_op.add_column(sa.Column("mcp_server_url", sa.String(URL_LENGTH), nullable=True))
        batch_op.add_column(sa.Column("display_name", sa.String(255), nullable=True))
        batch_op.add_column(sa.Column("mcp_registration_id", sa.String(40), nullable=True))
        batch_op.create_foreign_key(
            op.f("fk_connections_mcp_registration_id_mcp_client_registrations"),
            "mcp_client_registrations",
            ["mcp_registration_id"],
            ["id"],
            ondelete="SET NULL",
        )
        batch_op.drop_index("uq_connections_live_account")
        batch_op.create_index(
            "uq_connections_live_account",
            ["organization_id", "user_id", "app_key", "account_id"],
            unique=True,
            postgresql_where=sa.text("deleted_at IS NULL AND mcp_server_url IS NULL"),
            sqlite_where=sa.text("deleted_at IS NULL AND mcp_server_url IS NULL"),
        )
        batch_op.create_index(
            "uq_connections_live_mcp_account",
            ["organization_id", "user_id", "mcp_server_url", "account_id"],
            unique=True,
            postgresql_where=sa.text("deleted_at IS NULL AND mcp_server_url IS NOT NULL"),
            sqlite_where=sa.text("deleted_at IS NULL AND mcp_server_url IS NOT NULL"),
        )
    with op.batch_alter_table("flows") as batch_op:
        batch_op.alter_column("oauth_app_id", existing_type=sa.String(40), nullable=True)
        batch_op.add_column(sa.Column("mcp_registration_id", sa.String(40), nullable=True))
        batch_op.add_column(sa.Column("mcp_server_url", sa.String(URL_LENGTH), nullable=True))
        batch_op.add_column(sa.Column("display_name", sa.String(255), nullable=True))
        batch_op.create_foreign_key(
            op.f("fk_flows_mcp_registration_id_mcp_client_registrations"),
            "mcp_client_registrations",
            ["mcp_registration_id"],
            ["id"],
            ondelete="CASCADE",
        )


def downgrade() -> None:
    op.execute("DELETE FROM flows WHERE oauth_app_id IS NULL")
    with op.batch_alter_table("flows") as batch_op:
        batch_op.drop_constraint(
            op.f("fk_flows_mcp_registration_id_mcp_client_registrations"), type_="foreignkey"
        )
        batch_op.drop_column("display_name")
        batch_op.drop_column("mcp_server_url")
        batch_op.drop_column("mcp_registration_id")
        batch_op.alter_column("oauth_app_id", existing_type=sa.String(40), nullable=False)
    op.execute("DELETE FROM connections WHERE mcp_server_url IS NOT NULL")
    with op.batch_alter_table("connections") as batch_op:
        batch_op.drop_index("uq_connections_live_mcp_account")
        batch_op.drop_index("uq_connections_live_account")
        batch_op.create_index(
            "uq_connections_live_account",
            ["organization_id", "user_id", "app_key", "account_id"],
            unique=True,
            postgresql_where=sa.text("deleted_at IS NULL"),
            sqlite_where=sa.text("deleted_at IS NULL"),
        )
        batch_op.drop_constraint(
            op.f("fk_connections_mcp_registration_id_mcp_client_registrations"),
            type_="foreignkey",
        )
        batch_op.drop_column("mcp_registration_id")
        batch_op.drop_column("display_name")
        batch_op.drop_column("mcp_server_url")
    op.drop_index("uq_mcp_client_registrations_org_server", table_name="mcp_client_registrations")
    op.drop_table("mcp_client_registrations")
