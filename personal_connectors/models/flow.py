"""One authorization attempt, found again by the hash of its state token."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import ForeignKey, Index, LargeBinary, String, Text, false
from sqlalchemy.orm import Mapped, mapped_column

from personal_connectors.models.base import Base, id_column, utcnow
from personal_connectors.models.mcp_registration import MCP_SERVER_URL_MAX_LENGTH


class FlowStatus(StrEnum):
    PENDING = "pending"  # the user has not come back from the provider yet
    EXCHANGING = "exchanging"  # the callback claimed the flow and is exchanging the code
    AUTHORIZED = "authorized"  # tokens held, waiting for an explicit complete-oauth
    COMPLETED = "completed"  # a connection was created or updated
    FAILED = "failed"  # the provider refused, or the exchange failed


class FlowGrant(StrEnum):
    """How the user's consent reaches the service: a browser redirect, or RFC 8628 polling."""

    AUTHORIZATION_CODE = "authorization_code"
    DEVICE_CODE = "device_code"


class FlowCompletion(StrEnum):
    CALLBACK = "callback"
    EXPLICIT = "explicit"


class Flow(Base):
    __tablename__ = "flows"
    __table_args__ = (
        # The per-user bound on pending flows counts through this index (flows/service.py).
        Index("ix_flows_user_pending", "user_id", "status", "expires_at"),
        # The connect page's opener asks for one attempt of its session (connect_page/).
        Index("ix_flows_connect_attempt", "connect_session_id", "connect_attempt"),
    )

    id: Mapped[str] = id_column()
    state_hash: Mapped[str] = mapped_column(String(64), unique=True)
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    app_key: Mapped[str] = mapped_column(String(64))
    # The OAuth app of a catalog connector; None for a custom MCP server's flow, which uses
    # the service's registration at that server's authorization server instead.
    oauth_app_id: Mapped[str | None] = mapped_column(
        ForeignKey("oauth_apps.id", ondelete="CASCADE")
    )
    mcp_registration_id: Mapped[str | None] = mapped_column(
        ForeignKey("mcp_client_registrations.id", ondelete="CASCADE")
    )
    mcp_server_url: Mapped[str | None] = mapped_column(String(MCP_SERVER_URL_MAX_LENGTH))
    display_name: Mapped[str | None] = mapped_column(String(255))
    redirect_uri: Mapped[str] = mapped_column(Text)
    scopes: Mapped[list[str]]
    integration_params: Mapped[dict[str, Any]]
    return_url: Mapped[str | None] = mapped_column(Text)
    completion: Mapped[str] = mapped_column(String(20), default=FlowCompletion.CALLBACK)
    status: Mapped[str] = mapped_column(String(20), default=FlowStatus.PENDING)
    # Sealed with the flow id as associated data: the PKCE verifier and, in explicit completion,
    # the token answer held until complete-oauth.
    key_id: Mapped[str] = mapped_column(String(32))
    code_verifier_ct: Mapped[bytes | None] = mapped_column(LargeBinary)
    grant_ct: Mapped[bytes | None] = mapped_column(LargeBinary)
    connection_id: Mapped[str | None] = mapped_column(String(40))
    error_code: Mapped[str | None] = mapped_column(String(100))
    error_description: Mapped[str | None] = mapped_column(Text)
    expires_at: Mapped[datetime]
    # Indexed: old flows are purged by creation time on every /authorize.
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    finished_at: Mapped[datetime | None]
    # Browser binding (RFC 9700 §4.7, flows/binding.py): SHA-256 of the secret in the cookie of
    # the browser that started the flow; the callback refuses another browser. None: unbound.
    binding_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    # A stateless provider's flow started by the API waits for its one-time launch URL: the
    # hash of the launch token, and the provider's authorization URL sealed until then.
    launch_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    launch_url_ct: Mapped[bytes | None] = mapped_column(LargeBinary)
    # Started from the hosted connect page: the callback answers that page, not the API caller.
    connect_session_id: Mapped[str | None] = mapped_column(String(40))
    # The connect page's handle for a popup attempt: its opener polls that attempt's state.
    connect_attempt: Mapped[str | None] = mapped_column(String(64))
    # `require_verifier`: complete-oauth needs the one-time verifier that only the returning
    # browser receives (with the return_url redirect); its SHA-256 is kept once it is issued.
    require_verifier: Mapped[bool] = mapped_column(default=False, server_default=false())
    verifier_hash: Mapped[str | None] = mapped_column(String(64))
    # Device authorization grant (RFC 8628, flows/device.py): the device code sealed like the
    # verifier, the polling interval the provider asked for (raised by slow_down), and the
    # earliest moment complete-oauth may ask the provider again.
    grant_type: Mapped[str] = mapped_column(String(30), default=FlowGrant.AUTHORIZATION_CODE)
    device_code_ct: Mapped[bytes | None] = mapped_column(LargeBinary)
    poll_interval: Mapped[int | None]
    next_poll_at: Mapped[datetime | None]
    # Incremental authorization: the connection this flow was asked to extend (its account
    # must come back, or the flow fails rather than connect another account).
    extends_connection_id: Mapped[str | None] = mapped_column(String(40))
