"""The connection line format shared by import and export (SPEC §4, one JSON object a line).

Validation runs with an ``ImportContext`` that knows the organization's members and the catalog,
so a line naming a stranger or an unknown provider is refused by the same model that checks the
types. Error messages are built from Pydantic's locations and messages only, never its inputs,
so a bad line's tokens never reach the terminal.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Set
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from personal_connectors.apps.registrations import CUSTOM_MCP
from personal_connectors.connections.tags import check_metadata, check_tags
from personal_connectors.credentials.service import check_fields
from personal_connectors.exceptions import ValidationFailed
from personal_connectors.identity.service import END_USER_ID_RULE, valid_end_user_id
from personal_connectors.models.mcp_registration import (
    DISPLAY_NAME_MAX_LENGTH,
    MCP_SERVER_URL_MAX_LENGTH,
)
from personal_connectors.oauth.rfc8707 import canonical_resource
from personal_connectors.providers.catalog import Catalog
from personal_connectors.providers.schema import CREDENTIALS_MODES, MINTING_MODES, AuthMode
from personal_connectors.providers.templating import validate_integration_params


@dataclass(frozen=True)
class ImportContext:
    """What a line is checked against besides its own shape."""

    members: Set[str]
    catalog: Catalog


class ConnectionRecord(BaseModel):
    """One connection with its tokens in clear: only ever held in memory or inside an envelope.

    ``integration_params`` goes beyond the SPEC's line (optional, default none) so that an export
    of a provider whose URLs need them (a Zendesk subdomain) imports into a working connection;
    ``provider_metadata`` likewise (a Salesforce ``instance_url``). A connection made with
    credentials (SPEC §10) carries its ``auth_mode`` and its ``credentials`` fields, in clear
    like the tokens (so only ever inside the export's envelope): ``api_key`` and ``basic`` have
    no token, the minting modes their current minted one, if any (else one is minted on first
    use), and none has a refresh token.

    A ``custom_mcp`` connection (SPEC §11) adds its server and name, and ``mcp_client_id``: the
    client its tokens were issued to (the organization's registration at the server's
    authorization server; its secret is never written). A server that needs no authorization
    has no tokens and no client.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    # The owner: a member (``user_id``) or an end user of the organization (``end_user_id``,
    # the platform's id; created on first use, as a service key's first write creates it).
    user_id: str | None = Field(default=None, min_length=1, max_length=40)
    end_user_id: str | None = None
    app_key: str = Field(min_length=1, max_length=64)
    account_id: str = Field(min_length=1, max_length=255)
    account_email: str | None = Field(default=None, max_length=320)
    account_name: str | None = Field(default=None, max_length=255)
    # repr=False: a record that reaches a log or a traceback shows no token. Required of an
    # OAuth connection (``_tokens_fit_the_mode``) but a custom MCP server that needs no
    # authorization.
    access_token: str | None = Field(default=None, min_length=1, repr=False)
    refresh_token: str | None = Field(default=None, min_length=1, repr=False)
    expires_at: datetime | None = None
    scopes: list[str] = Field(default_factory=list)
    token_type: str = Field(default="Bearer", min_length=1, max_length=40)
    integration_params: dict[str, str] = Field(default_factory=dict)
    # The platform's labels (SPEC §8); absent (None) leaves an updated connection's as they are.
    tags: dict[str, str] | None = None
    metadata: dict[str, Any] | None = None
    mcp_server_url: str | None = Field(
        default=None, min_length=1, max_length=MCP_SERVER_URL_MAX_LENGTH
    )
    display_name: str | None = Field(default=None, min_length=1, max_length=DISPLAY_NAME_MAX_LENGTH)
    mcp_client_id: str | None = Field(default=None, min_length=1, max_length=255)
    provider_metadata: dict[str, str] = Field(default_factory=dict)
    auth_mode: AuthMode = "oauth2"
    credentials: dict[str, str] | None = Field(default=None, repr=False)
    credential_name: str | None = Field(default=None, min_length=1, max_length=255)

    @field_validator("account_id", mode="before")
    @classmethod
    def _numeric_account_ids(cls, value: object) -> object:
        # Provider account ids are often numbers (GitHub's); a JSON number means the same account.
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        return value

    @field_validator("expires_at", mode="before")
    @classmethod
    def _iso_8601_with_offset(cls, value: object) -> object:
        """ISO 8601 text with a UTC offset; Pydantic alone would also take epoch numbers."""
        if value is None:
            return None
        if isinstance(value, datetime):
            parsed = value
        elif isinstance(value, str):
            try:
                parsed = datetime.fromisoformat(value)
            except ValueError:
                raise ValueError(
                    "must be an ISO 8601 date-time, e.g. 2026-01-01T00:00:00Z"
                ) from None
        else:
            raise ValueError("must be an ISO 8601 date-time string")
        if parsed.tzinfo is None:
            # A token's expiry off by the importer's UTC offset would refresh at the wrong time.
            raise ValueError("must include a UTC offset, e.g. 2026-01-01T00:00:00Z")
        return parsed

    @field_validator("tags")
    @classmethod
    def _tags_within_limits(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        return None if value is None else _checked(check_tags, value)

    @field_validator("metadata")
    @classmethod
    def _metadata_within_limits(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if value is None else _checked(check_metadata, value)

    @field_validator("user_id")
    @classmethod
    def _member_of_the_organization(cls, value: str | None, info: ValidationInfo) -> str | None:
        context = _context(info)
        if value is not None and context is not None and value not in context.members:
            raise ValueError("not a member of this organization")
        return value

    @field_validator("end_user_id")
    @classmethod
    def _an_end_user_id(cls, value: str | None) -> str | None:
        if value is not None and not valid_end_user_id(value):
            raise ValueError(END_USER_ID_RULE)
        return value

    @model_validator(mode="after")
    def _one_owner(self) -> ConnectionRecord:
        if (self.user_id is None) == (self.end_user_id is None):
            raise ValueError(
                "name the connection's owner: user_id (a member) or end_user_id (an end user)"
            )
        return self

    @model_validator(mode="after")
    def _tokens_fit_the_mode(self) -> ConnectionRecord:
        """What each mode holds: OAuth an access token and no credentials; a credentials mode
        its fields and no refresh token; ``api_key`` and ``basic`` no token at all. Messages
        name fields, as Pydantic's own do, never values."""
        problems: list[str] = []
        if self.auth_mode == "oauth2":
            # (A custom MCP server's tokens: ``_tokens_and_server_fit_the_kind``.)
            if self.access_token is None and self.app_key != CUSTOM_MCP:
                problems.append("access_token: Field required")
            if self.credentials is not None:
                problems.append("credentials: only a credentials mode's connection has them")
        else:
            if self.credentials is None:
                problems.append(f"credentials: required for auth_mode {self.auth_mode}")
            if self.refresh_token is not None:
                problems.append(f"refresh_token: auth_mode {self.auth_mode} has none")
            if self.auth_mode not in MINTING_MODES and self.access_token is not None:
                problems.append(f"access_token: auth_mode {self.auth_mode} has none")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @model_validator(mode="after")
    def _credentials_fit_the_provider(self, info: ValidationInfo) -> ConnectionRecord:
        """The line's mode is the entry's, and its fields are the entry's (``check_fields``:
        every declared one, their patterns, a private key that loads)."""
        context = _context(info)
        entry = context.catalog.get(self.app_key) if context is not None else None
        if entry is None:
            return self
        if entry.auth_mode != self.auth_mode:
            raise ValueError(f"auth_mode: {self.app_key} connects with {entry.auth_mode}")
        if self.credentials is not None and entry.auth_mode in CREDENTIALS_MODES:
            try:
                check_fields(entry, self.credentials)
            except ValidationFailed as exc:
                raise ValueError(exc.system_message) from None
        return self

    @field_validator("app_key")
    @classmethod
    def _in_the_catalog(cls, value: str, info: ValidationInfo) -> str:
        context = _context(info)
        if context is not None and value not in context.catalog and value != CUSTOM_MCP:
            raise ValueError("not in the provider catalog")
        return value

    @field_validator("mcp_server_url")
    @classmethod
    def _canonical_server_url(cls, value: str | None) -> str | None:
        """Stored as the flow stores it (RFC 8707 canonical form), so a line matches the
        organization's registration and the account's connection."""
        if value is None:
            return None
        try:
            return canonical_resource(value)
        except ValueError:
            raise ValueError("not an absolute http(s) URL") from None

    @model_validator(mode="after")
    def _tokens_and_server_fit_the_kind(self) -> ConnectionRecord:
        if self.app_key != CUSTOM_MCP:
            if self.mcp_server_url or self.display_name or self.mcp_client_id:
                raise ValueError(
                    f"mcp_server_url, display_name and mcp_client_id are for {CUSTOM_MCP} lines"
                )
            return self
        if self.mcp_server_url is None or self.display_name is None:
            raise ValueError(f"a {CUSTOM_MCP} line needs mcp_server_url and display_name")
        if self.auth_mode != "oauth2" or self.credentials is not None:
            raise ValueError(f"a {CUSTOM_MCP} line has OAuth tokens or none, no credentials")
        if (self.access_token is None) != (self.mcp_client_id is None):
            raise ValueError(
                "a custom MCP server's tokens come with mcp_client_id (the client they were "
                "issued to); a server that needs no authorization has neither"
            )
        if self.access_token is None and self.refresh_token is not None:
            raise ValueError("refresh_token without access_token")
        return self

    @model_validator(mode="after")
    def _integration_params_fit_the_provider(self, info: ValidationInfo) -> ConnectionRecord:
        context = _context(info)
        entry = context.catalog.get(self.app_key) if context is not None else None
        if entry is not None:
            try:
                validate_integration_params(entry, self.integration_params)
            except ValidationFailed as exc:
                raise ValueError(exc.system_message) from None
        return self

    def to_line(self) -> str:
        """The JSON line, SPEC field order; the owner's one field; the fields beyond the SPEC's
        line only when they say something (an OAuth connection's line is the SPEC's)."""
        data = self.model_dump(mode="json")
        for owner in ("user_id", "end_user_id"):
            if data[owner] is None:
                del data[owner]
        for optional in (
            "integration_params",
            "tags",
            "metadata",
            "provider_metadata",
            "credentials",
            "credential_name",
            "access_token",
            "mcp_server_url",
            "display_name",
            "mcp_client_id",
        ):
            if not data[optional]:
                del data[optional]
        if data["auth_mode"] == "oauth2":
            del data["auth_mode"]
        return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def _checked(check: Callable[[Any], Any], value: Any) -> Any:
    """A ``connections.tags`` check as a Pydantic validator: its 400 becomes a line error."""
    try:
        return check(value)
    except ValidationFailed as exc:
        raise ValueError(exc.system_message) from None


def _context(info: ValidationInfo) -> ImportContext | None:
    context: Any = info.context
    return context if isinstance(context, ImportContext) else None


def describe(error: ValidationError) -> str:
    """A one-line account of what is wrong, from locations and messages only (no input values)."""
    parts: list[str] = []
    for item in error.errors(include_input=False, include_url=False, include_context=False):
        message = item["msg"].removeprefix("Value error, ")
        where = ".".join(str(part) for part in item["loc"])
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts)
