"""API shapes of ``GET /available`` and ``GET /available/{tool_key}`` (SPEC §3.2)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from personal_connectors.providers.schema import ProviderEntry


class ConnectorOut(BaseModel):
    id: str
    tool_key: str
    app_key: str
    display_name: str
    description: str | None
    category: str | None
    icon_url: str | None
    auth_mode: str
    configured: bool
    is_connected: bool
    connection_id: str | None
    release_channel: str

    @classmethod
    def of(
        cls, entry: ProviderEntry, *, configured: bool, connection_id: str | None
    ) -> ConnectorOut:
        return cls(
            id=f"pcon_{entry.key}",
            tool_key=entry.key,
            app_key=entry.key,
            display_name=entry.display_name,
            description=entry.description,
            category=entry.category,
            icon_url=entry.icon_url,
            auth_mode=entry.auth_mode,
            configured=configured,
            is_connected=connection_id is not None,
            connection_id=connection_id,
            release_channel=entry.release_channel,
        )


class ConnectorList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ConnectorOut]
