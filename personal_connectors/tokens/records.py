"""What the token path reads of a connection: a plain record.

``POST /{id}/token`` reads the caller's key (``identity.records``) and the connection in one
statement (``tokens.repository``) on every call; a named tuple holds the row for less than an
ORM instance built outside a session would cost. The rules applied to it (``needs_refresh``,
``TokenVault``, ``Refresher``) read the same names from a model instance just as well
(``ConnectionLike``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

from personal_connectors.models import Connection


class ConnectionRecord(NamedTuple):
    """A connection's columns that handing out its token reads (``TokenService.issue``,
    ``needs_refresh``, ``Refresher.current`` and ``refresh``, ``TokenVault.access_token``), and
    the proxy and the MCP gateway, which authorize their calls by the same lookup."""

    id: str
    organization_id: str
    user_id: str
    app_key: str
    status: str
    status_reason: str | None
    is_active: bool
    scopes: list[str]
    provider_metadata: dict[str, Any] | None
    token_type: str
    # `oauth2`, or a credentials mode (SPEC §10): the token route branches on it, and reads
    # a credentials connection's fields only then (``TokenService.issue``).
    auth_mode: str
    key_id: str
    access_token_ct: bytes | None
    expires_at: datetime | None
    token_issued_at: datetime | None
    version: int
    # What the MCP gateway reads of a connection (``mcp_servers.gateway``): where its server
    # is, which tools it may use, and its tool-name prefix.
    mcp_server_url: str | None
    tools_enabled: bool
    allowed_tools: list[str] | None
    display_name: str | None
    mcp_prefix: str | None


ConnectionLike = Connection | ConnectionRecord
