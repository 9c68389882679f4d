"""API shapes of the token endpoint. The refresh token never leaves the service."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class TokenOut(BaseModel):
    access_token: str
    token_type: str
    expires_at: datetime | None
    scopes: list[str]
    connection_id: str
    app_key: str
    provider_metadata: dict[str, str] = Field(
        default_factory=dict,
        description="Non-secret values the provider sent that API calls need "
        "(e.g. Salesforce `instance_url`, QuickBooks `realmId`).",
    )
