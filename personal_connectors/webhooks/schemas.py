"""API shapes of webhook endpoints. The signing secret goes out once, on create and rotate."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from personal_connectors.http.schemas import RequestBody
from personal_connectors.models import WebhookEndpoint


class WebhookIn(RequestBody):
    url: str = Field(min_length=1, max_length=2000, description="https URL the events go to.")
    event_types: list[str] | None = Field(
        default=None,
        min_length=1,
        max_length=50,
        description="Event types to receive; omitted: every type except `token_issued` ones.",
    )
    description: str | None = Field(default=None, max_length=500)


class WebhookOut(BaseModel):
    id: str
    organization_id: str
    url: str
    description: str | None
    event_types: list[str] | None
    is_active: bool
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, endpoint: WebhookEndpoint) -> WebhookOut:
        return cls(
            id=endpoint.id,
            organization_id=endpoint.organization_id,
            url=endpoint.url,
            description=endpoint.description,
            event_types=endpoint.event_types,
            is_active=endpoint.is_active,
            created_at=endpoint.created_at,
            updated_at=endpoint.updated_at,
        )


class WebhookWithSecretOut(WebhookOut):
    secret: str = Field(description="`whsec_…`: shown only now; verify signatures with it.")


class WebhookList(BaseModel):
    object: Literal["list"] = "list"
    data: list[WebhookOut]
