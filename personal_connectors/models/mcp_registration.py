"""The service's client registrations (RFC 7591) at the authorization servers of MCP servers.

One per organization and MCP server (``server_url``, the server's canonical URI): a
registration made for one server is never used for another, even one that names the same
authorization server, so a server cannot get a token meant for another (the confused deputy).
An administrator may bind an app registered by hand instead (``bound``), for an authorization
server that offers no dynamic registration.
The authorization server's endpoints, as read and checked when it was registered, are kept
with it; the client secret is sealed like every secret, with the row's id as associated data.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, LargeBinary, String, Text, false
from sqlalchemy.orm import Mapped, mapped_column

from personal_connectors.models.base import Base, TimestampedMixin, id_column

MCP_SERVER_URL_MAX_LENGTH = 1000
# A custom MCP server connection's display name (given, or the server's own, cut to this).
DISPLAY_NAME_MAX_LENGTH = 100


class McpClientRegistration(TimestampedMixin, Base):
    __tablename__ = "mcp_client_registrations"
    __table_args__ = (
        Index(
            "uq_mcp_client_registrations_org_server", "organization_id", "server_url", unique=True
        ),
    )

    id: Mapped[str] = id_column()
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    server_url: Mapped[str] = mapped_column(String(MCP_SERVER_URL_MAX_LENGTH))
    issuer: Mapped[str] = mapped_column(Text)
    authorization_endpoint: Mapped[str] = mapped_column(Text)
    token_endpoint: Mapped[str] = mapped_column(Text)
    revocation_endpoint: Mapped[str | None] = mapped_column(Text)
    jwks_uri: Mapped[str | None] = mapped_column(Text)
    # RFC 9207: the server sends `iss` with its authorization responses.
    iss_parameter_supported: Mapped[bool] = mapped_column(default=False)
    token_endpoint_auth_method: Mapped[str] = mapped_column(String(40))
    client_id: Mapped[str] = mapped_column(String(500))
    client_secret_ct: Mapped[bytes] = mapped_column(LargeBinary)
    key_id: Mapped[str] = mapped_column(String(32))
    client_secret_expires_at: Mapped[datetime | None]
    # An app an administrator bound to this server (``PUT /apps/custom_mcp``) rather than one
    # the service registered: used as it is, never registered again.
    bound: Mapped[bool] = mapped_column(default=False, server_default=false())
