"""API shapes of the token endpoint. The refresh token never leaves the service."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel


class TokenOut(BaseModel):
    access_token: str
    token_type: str
    expires_at: datetime | None
    scopes: list[str]
    connection_id: str
    app_key: str
