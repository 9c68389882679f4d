"""API shapes of ``POST /credentials`` and ``PUT /{connection_id}/credentials`` (SPEC §10)."""

from __future__ import annotations

from typing import Annotated

from pydantic import AliasChoices, ConfigDict, Field, StringConstraints

from personal_connectors.http.schemas import RequestBody

# A field's value: long enough for a PEM private key, short enough to bound a row.
CredentialValue = Annotated[str, StringConstraints(max_length=8192)]
FieldName = Annotated[str, StringConstraints(min_length=1, max_length=64)]
ParamValue = Annotated[str, StringConstraints(max_length=500)]
MAX_FIELDS = 20


class CredentialsIn(RequestBody):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    connector_type: str = Field(
        min_length=1,
        max_length=64,
        validation_alias=AliasChoices("connector_type", "app_key"),
        description="The provider key; `app_key` is accepted as an alias.",
    )
    credentials: dict[FieldName, CredentialValue] = Field(
        max_length=MAX_FIELDS,
        description="The entry's declared credentials fields, by name (`GET /available/{key}` "
        "lists them). Sealed at rest; never returned by any list.",
    )
    name: str | None = Field(
        default=None,
        min_length=1,
        max_length=255,
        description="The caller's label for these credentials (`credential_name`).",
    )
    integration_params: dict[str, ParamValue] | None = Field(
        default=None, max_length=20, description="As in `POST /authorize`."
    )


class CredentialsReplaceIn(RequestBody):
    credentials: dict[FieldName, CredentialValue] = Field(
        max_length=MAX_FIELDS, description="Every declared field again, e.g. with a rotated key."
    )
    name: str | None = Field(default=None, min_length=1, max_length=255)
