"""API shapes of ``/api-keys`` (SPEC §8). The key itself appears only in ``IssuedKeyOut``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, Field, StringConstraints

from personal_connectors.http.schemas import RequestBody
from personal_connectors.models import KeyKind

# A key's lifetime is bounded: ten years is the longest it may be set to.
MAX_EXPIRES_IN_DAYS = 3650


class APIKeyIn(RequestBody):
    kind: KeyKind = Field(
        description="`user`: acts as the caller; `service`: acts for the organization's end "
        "users (owners and admins only); `exchange`: for the token exchange (owners and admins "
        "only)."
    )
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)] | (
        None
    ) = None
    expires_in_days: int | None = Field(default=None, ge=1, le=MAX_EXPIRES_IN_DAYS)


class IssuedKeyOut(BaseModel):
    id: str
    key: str = Field(description="The API key. Shown this once; only its hash is stored.")
    kind: KeyKind
    name: str | None
    created_at: datetime
    expires_at: datetime | None


class APIKeyOut(BaseModel):
    id: str
    kind: KeyKind
    name: str | None
    prefix: str = Field(description="The key's first characters, to recognise it by.")
    user_id: str | None = Field(description="A user key's user; null for organization keys.")
    status: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
