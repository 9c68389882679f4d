"""API shapes of the flow endpoints, as the seed document and SPEC §3.1 give them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, StrictBool, StringConstraints

from personal_connectors.connections.schemas import ConnectionOut, ConnectionSummary
from personal_connectors.http.schemas import RequestBody
from personal_connectors.models import ID_MAX_LENGTH
from personal_connectors.models.mcp_registration import (
    DISPLAY_NAME_MAX_LENGTH,
    MCP_SERVER_URL_MAX_LENGTH,
)
from personal_connectors.providers.scopes import MAX_SCOPES, Scope

ParamValue = Annotated[str, StringConstraints(max_length=500)]
# complete-oauth?wait=N: the longest a call may hold its answer (SPEC §8).
MAX_COMPLETE_WAIT_SECONDS = 60


class AuthorizeIn(RequestBody):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    connector_type: str = Field(
        min_length=1,
        max_length=64,
        validation_alias=AliasChoices("connector_type", "app_key"),
        description="The provider key (`github`); `app_key` is accepted as an alias.",
    )
    scopes: list[Scope] | None = Field(default=None, max_length=MAX_SCOPES)
    integration_params: dict[str, ParamValue] | None = Field(default=None, max_length=20)
    return_url: str | None = Field(default=None, max_length=2000)
    completion: Literal["callback", "explicit"] = "callback"
    grant: Literal["authorization_code", "device_code"] = Field(
        default="authorization_code",
        description="`device_code`: RFC 8628 for a user without a browser here — the answer "
        "carries a `user_code` to enter at `verification_uri`; complete-oauth polls.",
    )
    connection_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=ID_MAX_LENGTH,
        description="Extend this connection (incremental authorization): its scopes are asked "
        "again along with the new ones, and the same account must consent.",
    )
    mcp_server_url: str | None = Field(
        default=None,
        min_length=1,
        max_length=MCP_SERVER_URL_MAX_LENGTH,
        description="`custom_mcp` only: the remote MCP server (Streamable HTTP) to connect, "
        "https at a public address. Its authorization server is discovered from it (RFC 9728, "
        "RFC 8414) and the service registers there itself (RFC 7591), unless an administrator "
        "bound an app to the server (`PUT /apps/custom_mcp`).",
    )
    display_name: str | None = Field(
        default=None,
        min_length=1,
        max_length=DISPLAY_NAME_MAX_LENGTH,
        description="`custom_mcp` only: the connection's name (else the server's own); the "
        "gateway's tool prefix is made from it.",
    )
    require_verifier: StrictBool = Field(
        default=False,
        description="With `completion: explicit` and a `return_url`: the return_url redirect "
        "carries a one-time `verifier`, and complete-oauth refuses the flow without it — so "
        "only the browser that came back can finish the connection.",
    )


class AuthorizeOut(BaseModel):
    authorization_url: str = Field(
        description="Where the user consents: the provider's authorization URL, or for the "
        "device flow the verification URI (with the user code when the provider allows)."
    )
    launch_url: str | None = Field(
        default=None,
        description="Send the person here rather than to `authorization_url`: a one-time page "
        "on this service that shows whose account the connection will join, binds the flow "
        "to that browser (the callback refuses it in any other) and goes on to the provider. "
        "Absent for the device flow.",
    )
    state: str
    state_token: str
    expires_at: datetime
    # Device flow (RFC 8628 §3.2) only; absent otherwise.
    user_code: str | None = None
    verification_uri: str | None = None
    verification_uri_complete: str | None = None
    interval: int | None = Field(
        default=None, description="Seconds to wait between complete-oauth calls."
    )


class ConnectedAtOnce(BaseModel):
    """``POST /authorize`` for a custom MCP server that needs no authorization: connected now."""

    connected: Literal[True] = True
    connection: ConnectionOut
    authorization_url: None = None


class CompleteIn(RequestBody):
    state_token: str = Field(min_length=1, max_length=200)
    verifier: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="Required for a flow started with `require_verifier`: the `verifier` the "
        "return_url redirect carried.",
    )


class FlowError(BaseModel):
    code: str
    description: str | None


class CompleteOut(BaseModel):
    connected: bool
    connection: ConnectionSummary | None
    message: str
    error: FlowError | None = None
    # Device flow, still waiting: seconds before complete-oauth will ask the provider again.
    retry_after: int | None = None


class CallbackData(BaseModel):
    connection_id: str
    app_key: str
    status: str


class CallbackOut(BaseModel):
    success: Literal[True] = True
    data: CallbackData


class McpAppIn(RequestBody):
    """An app registered by hand at an MCP server's authorization server (SPEC §11)."""

    mcp_server_url: str = Field(
        min_length=1,
        max_length=MCP_SERVER_URL_MAX_LENGTH,
        description="The MCP server the app is for; flows for it use this app instead of the "
        "service's own dynamic client registration.",
    )
    client_id: str = Field(min_length=1, max_length=500)
    client_secret: str = Field(min_length=1, max_length=4000)
    token_endpoint_auth_method: Literal["client_secret_basic", "client_secret_post"] = (
        "client_secret_basic"
    )


class McpAppOut(BaseModel):
    app_key: Literal["custom_mcp"] = "custom_mcp"
    mcp_server_url: str
    client_id: str
    issuer: str = Field(description="The authorization server the app is registered at.")
    token_endpoint_auth_method: str
    redirect_uri: str = Field(description="Register this redirect URI with the app.")
    created_at: datetime
    updated_at: datetime


class McpAppList(BaseModel):
    object: Literal["list"] = "list"
    data: list[McpAppOut]
