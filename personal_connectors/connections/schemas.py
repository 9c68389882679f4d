"""API shapes of connections (SPEC §3.1 list item, §3.2 pages). Never a token."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel

from personal_connectors.models import Connection


class ConnectionStatusFilter(StrEnum):
    ACTIVE = "active"
    NEEDS_REAUTH = "needs_reauth"


class ConnectionOut(BaseModel):
    id: str
    connector_id: str
    connector_type: str
    app_key: str
    account_id: str
    account_email: str | None
    account_name: str | None
    status: str
    is_active: bool
    scopes: list[str]
    expires_at: datetime | None
    last_sync_at: datetime | None
    created_at: datetime
    updated_at: datetime
    mcp_configuration_id: str | None

    @classmethod
    def of(cls, connection: Connection) -> ConnectionOut:
        return cls(
            id=connection.id,
            connector_id=connection.id,
            connector_type=connection.app_key,
            app_key=connection.app_key,
            account_id=connection.account_id,
            account_email=connection.account_email,
            account_name=connection.account_name,
            status=connection.status,
            is_active=connection.is_active,
            scopes=list(connection.scopes or []),
            expires_at=connection.expires_at,
            last_sync_at=connection.last_sync_at,
            created_at=connection.created_at,
            updated_at=connection.updated_at,
            mcp_configuration_id=connection.mcp_configuration_id,
        )


class ConnectionSummary(BaseModel):
    """The short form in complete-oauth answers."""

    id: str
    app_key: str
    status: str
