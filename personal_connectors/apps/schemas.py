"""API shapes of OAuth apps. The client secret goes in, never out."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from personal_connectors.http.schemas import RequestBody


class OAuthAppIn(RequestBody):
    client_id: str = Field(min_length=1, max_length=500)
    client_secret: str = Field(min_length=1, max_length=4000)
    scopes: list[str] | None = Field(default=None, max_length=100)
    integration_params: dict[str, str] | None = Field(
        default=None,
        max_length=20,
        description="Values of the connector's admin-set integration params (`set_by: admin` "
        "in `GET /available`), e.g. the generic `oidc` entry's `issuer_host`. Members cannot "
        "choose these in `POST /authorize`.",
    )


class OAuthAppOut(BaseModel):
    app_key: str
    client_id: str
    scopes: list[str] | None
    integration_params: dict[str, str]
    source: Literal["organization", "service"]
    redirect_uri: str
    created_at: datetime
    updated_at: datetime


class OAuthAppList(BaseModel):
    object: Literal["list"] = "list"
    data: list[OAuthAppOut]
