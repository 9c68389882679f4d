"""A user's connected account at one provider, with its tokens sealed at rest."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, LargeBinary, String, Text, select, text
from sqlalchemy.orm import Mapped, column_property, mapped_column

from personal_connectors.models.base import Base, TimestampedMixin, id_column, utcnow
from personal_connectors.models.identity import EndUser
from personal_connectors.models.mcp_registration import MCP_SERVER_URL_MAX_LENGTH

# A tool-name prefix: an app key (64) or a display name's slug (40), then `_` and 6 hex digits.
MCP_PREFIX_MAX_LENGTH = 72

# The ``auth_mode`` of a custom MCP server's connection when the server needs no authorization
# (SPEC §11): it is called with no credentials at all.
NO_AUTH_MODE = "none"
# The ``auth_mode`` of a connection made by an OAuth authorization (the default).
OAUTH2_MODE = "oauth2"


class ConnectionStatus(StrEnum):
    ACTIVE = "active"
    NEEDS_REAUTH = "needs_reauth"
    DELETED = "deleted"


class Connection(TimestampedMixin, Base):
    __tablename__ = "connections"
    __table_args__ = (
        # The same provider account connected again by the same user updates, never duplicates.
        Index(
            "uq_connections_live_account",
            "organization_id",
            "user_id",
            "app_key",
            "account_id",
            unique=True,
            postgresql_where=text("deleted_at IS NULL AND mcp_server_url IS NULL"),
            sqlite_where=text("deleted_at IS NULL AND mcp_server_url IS NULL"),
        ),
        # A custom MCP server's connection (SPEC §11): one per user, server and account, since
        # two servers may share an authorization server and so the account's subject.
        Index(
            "uq_connections_live_mcp_account",
            "organization_id",
            "user_id",
            "mcp_server_url",
            "account_id",
            unique=True,
            postgresql_where=text("deleted_at IS NULL AND mcp_server_url IS NOT NULL"),
            sqlite_where=text("deleted_at IS NULL AND mcp_server_url IS NOT NULL"),
        ),
        Index("ix_connections_owner", "organization_id", "user_id", "created_at"),
        Index("ix_connections_expires_at", "expires_at"),
        # A background refresher renews all the leases it holds by owner (tokens.lease).
        Index("ix_connections_refresh_lease_owner", "refresh_lease_owner"),
        # The refresher's idle claim: refresh tokens unused since a time (refresher.repository).
        Index(
            "ix_connections_idle_since",
            text("coalesce(last_refreshed_at, created_at)"),
            postgresql_where=text("refresh_token_ct IS NOT NULL AND deleted_at IS NULL"),
            sqlite_where=text("refresh_token_ct IS NOT NULL AND deleted_at IS NULL"),
        ),
    )

    id: Mapped[str] = id_column()
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    app_key: Mapped[str] = mapped_column(String(64))
    oauth_app_id: Mapped[str | None] = mapped_column(
        ForeignKey("oauth_apps.id", ondelete="SET NULL")
    )
    account_id: Mapped[str] = mapped_column(String(255))
    account_email: Mapped[str | None] = mapped_column(String(320))
    account_name: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(20), default=ConnectionStatus.ACTIVE)
    status_reason: Mapped[str | None] = mapped_column(Text)
    is_active: Mapped[bool] = mapped_column(default=True)
    scopes: Mapped[list[str]]
    integration_params: Mapped[dict[str, Any]]
    # Non-secret values from the token answer or the redirect back that callers need to build
    # API URLs (Salesforce `instance_url`, QuickBooks `realmId`); the catalog names them.
    provider_metadata: Mapped[dict[str, Any] | None]
    # The platform's own labels (SPEC §8, ``connections.tags``): a string map the list filters
    # on, and any JSON object. None on rows older than revision 0011b: read as empty.
    tags: Mapped[dict[str, Any] | None]
    # ``metadata`` is the declarative base's own attribute, hence the trailing underscore.
    metadata_: Mapped[dict[str, Any] | None] = mapped_column("metadata")
    token_type: Mapped[str] = mapped_column(String(40), default="Bearer")
    # How the connection was made (SPEC §10): `oauth2`, or a credentials mode of the catalog
    # (`api_key`, `basic`, `oauth2_client_credentials`, `jwt_bearer`).
    auth_mode: Mapped[str] = mapped_column(
        String(40), default=OAUTH2_MODE, server_default=OAUTH2_MODE
    )
    # A credentials mode's fields as a sealed JSON object (``TokenVault.seal_credentials``),
    # under the row's ``key_id`` like the tokens; their names alone in ``credential_fields``
    # (what lists show), and the caller's label for them in ``credential_name``.
    credentials_ct: Mapped[bytes | None] = mapped_column(LargeBinary)
    credential_fields: Mapped[list[str] | None]
    credential_name: Mapped[str | None] = mapped_column(String(255))
    key_id: Mapped[str] = mapped_column(String(32))
    access_token_ct: Mapped[bytes | None] = mapped_column(LargeBinary)
    refresh_token_ct: Mapped[bytes | None] = mapped_column(LargeBinary)
    expires_at: Mapped[datetime | None]
    # When the provider issued the current access token (None: unknown, e.g. before the first
    # refresh): with ``expires_at`` it gives the token's lifetime, which the refresh margins
    # are relative to (tokens.refresh.needs_refresh).
    token_issued_at: Mapped[datetime | None]
    # The token's half-life: the background refresher takes it up from then on (never before
    # ``expires_at`` is inside its window); None when the lifetime is unknown.
    refresh_due_at: Mapped[datetime | None]
    # Bumped by every token write: a compare-and-swap guard against lost updates.
    version: Mapped[int] = mapped_column(Integer, default=1)
    # The refresh lease: who may refresh this connection's token right now, and until when.
    # A lease, not a held transaction, so no database connection (nor SQLite's single write
    # lock) is pinned while the provider answers, and a crashed holder's lease simply expires.
    refresh_lease_owner: Mapped[str | None] = mapped_column(String(64))
    refresh_lease_until: Mapped[datetime | None]
    # Set with the lease when its holder may send the refresh token, cleared when the attempt
    # ends with a known outcome: found set under an expired lease, the holder died mid-attempt.
    refresh_attempt_at: Mapped[datetime | None]
    # Since when a refresh may have rotated the refresh token without our hearing the answer
    # (a timeout or reset after the request was sent, or a holder that died): an invalid_grant
    # that follows means the rotation was lost (``rotation_lost``), not a revoked grant.
    rotation_uncertain_since: Mapped[datetime | None]
    refresh_failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_refreshed_at: Mapped[datetime | None]
    tools_enabled: Mapped[bool] = mapped_column(default=True)
    allowed_tools: Mapped[list[str] | None]
    mcp_configuration_id: Mapped[str | None] = mapped_column(String(64))
    # A custom MCP server (``custom_mcp``, SPEC §11): its canonical URL, the name the gateway
    # shows it under, and the service's client registration at its authorization server
    # (None for a server that needs no authorization).
    mcp_server_url: Mapped[str | None] = mapped_column(String(MCP_SERVER_URL_MAX_LENGTH))
    display_name: Mapped[str | None] = mapped_column(String(255))
    mcp_registration_id: Mapped[str | None] = mapped_column(
        ForeignKey("mcp_client_registrations.id", ondelete="SET NULL")
    )
    # The gateway's tool-name prefix (SPEC §11), stored when the gateway first offers the
    # connection's tools so that it never changes while the connection lives (None: not yet).
    mcp_prefix: Mapped[str | None] = mapped_column(String(MCP_PREFIX_MAX_LENGTH))
    last_sync_at: Mapped[datetime | None]
    last_checked_at: Mapped[datetime | None]
    deleted_at: Mapped[datetime | None]
    # The platform's id of the end user who owns it (SPEC §8); None for a member's connection.
    # Deferred: only what shows connections loads it (``ConnectionRepository`` undefers it).
    end_user_id: Mapped[str | None] = column_property(
        select(EndUser.external_id)
        .where(EndUser.user_id == user_id)
        .correlate_except(EndUser)  # its own end_users, even in a query that joins that table
        .scalar_subquery(),
        deferred=True,
        expire_on_flush=False,
    )

    def record_check(self, tested_at: datetime, success: bool, message: str | None) -> None:
        """Store a check's outcome where health is read from (``connections.checks.health_of``):
        when one ran, when one last succeeded, and on an *active* connection why the last one
        failed (a ``needs_reauth`` connection keeps the reason its refresh token was refused)."""
        self.last_checked_at = tested_at
        if success:
            self.last_sync_at = tested_at
        if self.status == ConnectionStatus.ACTIVE:
            self.status_reason = None if success else message


class ConnectionEvent(Base):
    """The audit trail of a connection; never holds a token."""

    __tablename__ = "connection_events"
    __table_args__ = (
        Index("ix_connection_events_connection", "connection_id", "created_at"),
        # Retention deletes each type's oldest rows first (events/retention.py).
        Index("ix_connection_events_type_created", "type", "created_at"),
    )

    id: Mapped[str] = id_column()
    connection_id: Mapped[str] = mapped_column(String(40))
    organization_id: Mapped[str] = mapped_column(String(40), index=True)
    type: Mapped[str] = mapped_column(String(60))
    detail: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
