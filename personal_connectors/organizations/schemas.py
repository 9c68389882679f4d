"""API shapes of ``GET/PATCH /organization``."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field, StrictBool

from personal_connectors.http.schemas import RequestBody

REQUIRE_LAUNCHED_FLOWS = (
    "When true, the OAuth callback refuses every flow that was not launched in a browser: "
    "through the `launch_url` of `POST /authorize` (which shows whose account the connection "
    "joins and binds the flow to that browser) or from the hosted connect page. A flow opened "
    "through the bare `authorization_url` then ends with the error `not_launched`. Off by default."
)


class OrganizationOut(BaseModel):
    id: str
    name: str
    require_launched_flows: bool = Field(description=REQUIRE_LAUNCHED_FLOWS)
    created_at: datetime
    updated_at: datetime


class OrganizationPatch(RequestBody):
    require_launched_flows: StrictBool | None = Field(
        default=None, description=REQUIRE_LAUNCHED_FLOWS
    )
