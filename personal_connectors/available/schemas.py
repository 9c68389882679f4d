"""API shapes of ``GET /available`` and ``GET /available/{tool_key}`` (SPEC §3.2)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from personal_connectors.providers.schema import CREDENTIALS_MODES, ProviderEntry


class CredentialFieldOut(BaseModel):
    """One field a credentials connector asks for (SPEC §10)."""

    name: str
    label: str
    secret: bool
    pattern: str | None
    help_url: str | None


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
    credentials: list[CredentialFieldOut] | None = Field(
        default=None,
        description="Connectors that connect with credentials (`POST /credentials`): the "
        "fields to send. Null for OAuth connectors.",
    )

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
            # A credentials connector needs no OAuth app: each connection brings its own.
            configured=configured or entry.auth_mode in CREDENTIALS_MODES,
            is_connected=connection_id is not None,
            connection_id=connection_id,
            release_channel=entry.release_channel,
            credentials=[
                CredentialFieldOut(
                    name=f.name,
                    label=f.label,
                    secret=f.secret,
                    pattern=f.pattern,
                    help_url=f.help_url,
                )
                for f in entry.credentials
            ]
            or None,
        )


class ConnectorList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ConnectorOut]
