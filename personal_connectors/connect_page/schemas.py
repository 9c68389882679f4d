"""API shapes of ``POST /connect-sessions``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StringConstraints

from personal_connectors.http.schemas import RequestBody

DEFAULT_EXPIRES_IN = 1800
ConnectorKey = Annotated[str, StringConstraints(min_length=1, max_length=64)]


class ConnectSessionIn(RequestBody):
    allowed_connectors: list[ConnectorKey] | None = Field(
        default=None,
        min_length=1,
        max_length=100,
        description="Catalog keys the page offers; omitted: every configured connector.",
    )
    return_url: str | None = Field(
        default=None,
        max_length=2000,
        description="Where the page's Done link leads; its origin must be an allowed one.",
    )
    expires_in: int = Field(
        default=DEFAULT_EXPIRES_IN, ge=60, le=86400, description="Lifetime in seconds."
    )


class ConnectSessionOut(BaseModel):
    token: str = Field(description="`cs_…`: usable only on the connect page, shown once.")
    connect_url: str = Field(description="Open this in a popup or redirect the user to it.")
    expires_at: datetime


class AttemptStateOut(BaseModel):
    """``GET /connect/status``: where one popup attempt of the page stands."""

    state: Literal["starting", "pending", "connected", "failed"]
    connector: str | None
    # For a finished attempt: the same message the result page posts to the connect page.
    result: dict[str, Any] | None
