"""API shapes of connections (SPEC §3.1 list item, §3.2 pages). Never a token."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StrictBool, StringConstraints, field_validator

from personal_connectors.http.schemas import RequestBody
from personal_connectors.models import Connection

HealthStatus = Literal["healthy", "unhealthy", "unknown"]


class ConnectionStatusFilter(StrEnum):
    ACTIVE = "active"
    NEEDS_REAUTH = "needs_reauth"


class ConnectionOut(BaseModel):
    id: str
    connector_id: str
    connector_type: str
    app_key: str
    account_id: str
    account_email: str | None
    account_name: str | None
    status: str
    is_active: bool
    scopes: list[str]
    expires_at: datetime | None
    last_sync_at: datetime | None
    created_at: datetime
    updated_at: datetime
    mcp_configuration_id: str | None
    end_user_id: str | None = Field(
        default=None,
        description="The platform's id of the end user who owns it (service keys, SPEC §8); "
        "null for a member's own connection.",
    )
    provider_metadata: dict[str, str] = Field(
        default_factory=dict,
        description="Non-secret values the provider sent that API calls need "
        "(e.g. Salesforce `instance_url`, QuickBooks `realmId`).",
    )
    tags: dict[str, str] = Field(
        default_factory=dict,
        description="The platform's labels; the list filters on them (`tag=key:value`).",
    )
    metadata: dict[str, Any] = Field(
        default_factory=dict, description="The platform's own JSON object, stored as given."
    )
    auth_mode: str = Field(
        default="oauth2",
        description="`oauth2`, or how the credentials were given (SPEC §10): `api_key`, "
        "`basic`, `oauth2_client_credentials`, `jwt_bearer`.",
    )
    credential_fields: list[str] | None = Field(
        default=None,
        description="A credentials connection's field names (never their values); null for "
        "OAuth connections.",
    )
    credential_name: str | None = Field(
        default=None, description="The label given with `POST /credentials` (`name`)."
    )
    mcp_server_url: str | None = Field(
        default=None,
        description="A `custom_mcp` connection's MCP server (SPEC §11); null for the others.",
    )
    display_name: str | None = Field(
        default=None,
        description="A `custom_mcp` connection's name: the one given to `POST /authorize`, else "
        "the server's own (`serverInfo.name`). The gateway's tool prefix is made from it.",
    )

    @classmethod
    def of(cls, connection: Connection) -> ConnectionOut:
        return cls(
            id=connection.id,
            connector_id=connection.id,
            connector_type=connection.app_key,
            app_key=connection.app_key,
            account_id=connection.account_id,
            account_email=connection.account_email,
            account_name=connection.account_name,
            status=connection.status,
            is_active=connection.is_active,
            scopes=list(connection.scopes or []),
            expires_at=connection.expires_at,
            last_sync_at=connection.last_sync_at,
            created_at=connection.created_at,
            updated_at=connection.updated_at,
            mcp_configuration_id=connection.mcp_configuration_id,
            end_user_id=connection.end_user_id,
            provider_metadata=connection.provider_metadata or {},
            tags=connection.tags or {},
            metadata=connection.metadata_ or {},
            auth_mode=connection.auth_mode,
            credential_fields=connection.credential_fields,
            credential_name=connection.credential_name,
            mcp_server_url=connection.mcp_server_url,
            display_name=connection.display_name,
        )


class ConnectionSummary(BaseModel):
    """The short form in complete-oauth answers."""

    id: str
    app_key: str
    status: str


class ToolConnectionOut(BaseModel):
    """One account in ``GET /connections/{tool_key}``: the toggle list of a connector's page."""

    id: str
    tool_key: str
    display_name: str
    credential_name: str | None
    account_email: str | None
    connection_id: str
    is_active: bool
    created_at: datetime

    @classmethod
    def of(cls, connection: Connection, provider_name: str) -> ToolConnectionOut:
        account = connection.account_email or connection.account_name or connection.account_id
        return cls(
            id=connection.id,
            tool_key=connection.app_key,
            display_name=f"{account} - {provider_name}",
            credential_name=connection.credential_name,
            account_email=connection.account_email,
            connection_id=connection.id,
            is_active=connection.is_active,
            created_at=connection.created_at,
        )


class ToolConnectionsOut(BaseModel):
    tool_key: str
    connections: list[ToolConnectionOut]


class ActiveIn(RequestBody):
    # Strict: `"false"` or `0` is a client bug, and read as true it would re-enable a connection.
    is_active: StrictBool


class ActiveOut(BaseModel):
    id: str
    is_active: bool


class HealthOut(BaseModel):
    credential_id: str
    tool_key: str
    status: HealthStatus
    is_active: bool
    connection_status: str
    reason: str | None
    last_checked_at: datetime | None


class McpTestDetails(BaseModel):
    """The MCP server's side of ``POST /{id}/test`` (SPEC §11; camelCase as Freddy's)."""

    server_url: str = Field(serialization_alias="serverUrl")
    server_type: Literal["http"] = Field(default="http", serialization_alias="serverType")
    response_time_ms: int | None = Field(serialization_alias="responseTimeMs")
    server_version: str | None = Field(serialization_alias="serverVersion")
    available_tools: int | None = Field(serialization_alias="availableTools")


class CheckResultOut(BaseModel):
    """The answer of ``POST /{id}/test``; ``message`` never holds a token."""

    credential_id: str
    tool_key: str
    success: bool
    action_tested: str
    message: str
    execution_time_ms: int | None
    tested_at: datetime


class McpCheckResultOut(CheckResultOut):
    """``POST /{id}/test`` of a connection whose connector runs an MCP server (SPEC §11)."""

    status: Literal["healthy", "unhealthy"] = Field(
        description="`healthy` when the server answered the handshake and listed its tools."
    )
    details: McpTestDetails


class ToolOut(BaseModel):
    """One tool of ``GET /{id}/tools``: the server's definition, and whether it is enabled."""

    name: str
    description: str | None
    input_schema: dict[str, Any] = Field(serialization_alias="inputSchema")
    output_schema: dict[str, Any] | None = Field(default=None, serialization_alias="outputSchema")
    annotations: dict[str, Any] | None = None
    enabled: bool = Field(description="Whether the platform may use it (`PATCH /{id}/tools`).")

    @classmethod
    def of(cls, tool: dict[str, Any], enabled: bool) -> ToolOut:
        """Optional fields only when the server gave them (the answer leaves them out)."""
        optional = {
            field: tool[key]
            for field, key in (("output_schema", "outputSchema"), ("annotations", "annotations"))
            if tool.get(key) is not None
        }
        return cls(
            name=tool["name"],
            description=tool.get("description"),
            input_schema=tool.get("inputSchema") or {},
            enabled=enabled,
            **optional,
        )


class ToolListOut(BaseModel):
    object: Literal["list"] = "list"
    data: list[ToolOut]


ToolName = Annotated[
    str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")
]


class ToolsIn(RequestBody):
    enabled: StrictBool = Field(description="Enable or disable all of the connection's tools.")
    allowed_tools: list[ToolName] | None = Field(
        default=None,
        max_length=500,
        description="The tool names allowed; `null` or omitted allows all.",
    )

    @field_validator("allowed_tools")
    @classmethod
    def _once_each(cls, value: list[str] | None) -> list[str] | None:
        """Keep the first of any repeated name, so the stored list is a set in the given order."""
        return None if value is None else list(dict.fromkeys(value))


class ToolsData(BaseModel):
    connection_id: str
    enabled: bool
    allowed_tools: list[str] | None


class ToolsOut(BaseModel):
    success: Literal[True] = True
    message: str
    data: ToolsData


class LabelsIn(RequestBody):
    """``PATCH /{connection_id}``: an RFC 7396 merge patch of the connection's tags and
    metadata. A field left out is unchanged; ``null`` (the field, or a key in it) removes."""

    tags: dict[str, Any] | None = Field(
        default=None,
        description="Tags to set (string values) or remove (null values); null removes all.",
    )
    metadata: dict[str, Any] | None = Field(
        default=None,
        description="Merged into the metadata key by key, nested objects recursively; "
        "a null value removes its key; null removes all.",
    )
