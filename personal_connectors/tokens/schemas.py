"""API shapes of the token endpoint. The refresh token never leaves the service, nor does a
minting connection's client secret or private key (SPEC §10)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class TokenOut(BaseModel):
    access_token: str | None = Field(
        description="The provider's access token; null for `api_key` and `basic` connections, "
        "whose `credentials` are what the caller's tool sends."
    )
    token_type: str | None = Field(
        description="The provider's token type (`Bearer`); null when there is no token."
    )
    expires_at: datetime | None
    scopes: list[str]
    connection_id: str
    app_key: str
    provider_metadata: dict[str, str] = Field(
        default_factory=dict,
        description="Non-secret values the provider sent that API calls need "
        "(e.g. Salesforce `instance_url`, QuickBooks `realmId`).",
    )
    auth_mode: str = Field(
        default="oauth2",
        description="How the connection was made: `oauth2`, `api_key`, `basic`, "
        "`oauth2_client_credentials` or `jwt_bearer` (SPEC §10).",
    )
    credentials: dict[str, str] | None = Field(
        default=None,
        description="`api_key` and `basic` connections: the fields the catalog entry declares, "
        "for the caller's tool to send as the entry's `api_auth` says; null otherwise.",
    )
