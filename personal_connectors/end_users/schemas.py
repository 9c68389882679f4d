"""API shapes of ``/end-users`` (SPEC §8)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, Field, StringConstraints, field_validator

from personal_connectors.connections.tags import (
    MAX_TAG_KEY_LENGTH,
    MAX_TAG_VALUE_LENGTH,
    MAX_TAGS,
)
from personal_connectors.http.schemas import RequestBody
from personal_connectors.models import EndUser


class EndUserIn(RequestBody):
    """Fields left out keep their value; ``null`` clears one."""

    email: Annotated[str, StringConstraints(strip_whitespace=True, max_length=320)] | None = None
    display_name: (
        Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)] | None
    ) = None
    tags: dict[str, str] | None = Field(
        default=None,
        description=f"Up to {MAX_TAGS} tags; keys of 1-{MAX_TAG_KEY_LENGTH} and values of up "
        f"to {MAX_TAG_VALUE_LENGTH} characters. Replaces the end user's tags.",
    )

    @field_validator("email")
    @classmethod
    def _an_email(cls, value: str | None) -> str | None:
        if value is not None and value and "@" not in value:
            raise ValueError("must be an email address")
        return value or None


class EndUserOut(BaseModel):
    id: str = Field(description="The platform's id for the end user (its `end_user_id`).")
    email: str | None
    display_name: str | None
    tags: dict[str, str]
    connection_count: int = Field(description="Its live connections.")
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, end_user: EndUser, connection_count: int) -> EndUserOut:
        return cls(
            id=end_user.external_id,
            email=end_user.email,
            display_name=end_user.display_name,
            tags=dict(end_user.tags or {}),
            connection_count=connection_count,
            created_at=end_user.created_at,
            updated_at=end_user.updated_at,
        )
