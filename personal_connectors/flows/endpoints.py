"""HTTP routes of the OAuth flow: authorize and complete-oauth (the provider's redirect back
is ``connect_page.callback``'s, since it answers the browser with the connect page's pages)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response
from fastapi.responses import JSONResponse

from personal_connectors.apps.registrations import McpRegistrations
from personal_connectors.flows.custom_mcp import McpDiscovery
from personal_connectors.flows.schemas import (
    MAX_COMPLETE_WAIT_SECONDS,
    AuthorizeIn,
    AuthorizeOut,
    CompleteIn,
    CompleteOut,
    ConnectedAtOnce,
    McpAppIn,
    McpAppList,
    McpAppOut,
)
from personal_connectors.flows.service import FlowService
from personal_connectors.http.dependencies import (
    AdminAccessDep,
    OrgAccessDep,
    RuntimeDep,
    SessionDep,
)
from personal_connectors.http.openapi import errors
from personal_connectors.models import McpClientRegistration
from personal_connectors.models.mcp_registration import MCP_SERVER_URL_MAX_LENGTH
from personal_connectors.oauth.client import ClientCredentials

router = APIRouter(tags=["OAuth flow"])


async def get_service(runtime: RuntimeDep, session: SessionDep) -> FlowService:
    return FlowService(session, runtime)


ServiceDep = Annotated[FlowService, Depends(get_service)]


@router.post(
    "/authorize",
    response_model=AuthorizeOut,
    response_model_exclude_none=True,  # the device-flow fields appear only for that grant
    summary="Start an OAuth flow",
    description="A catalog connector's flow; or with `connector_type: custom_mcp` and "
    "`mcp_server_url`, any remote MCP server's (its own authorization server, discovered). A "
    "custom MCP server that needs no authorization is connected at once: the answer is then "
    '`{"connected": true, "connection": {…}, "authorization_url": null}`.',
    # 429: too many pending flows; 502/503: the provider's metadata, PAR or device authorization
    responses=errors(429, 502, 503),
)
async def authorize(
    body: AuthorizeIn, access: OrgAccessDep, service: ServiceDep
) -> AuthorizeOut | JSONResponse:
    answer = await service.authorize(access, body)
    if isinstance(answer, ConnectedAtOnce):  # `authorization_url: null` is part of the shape
        return JSONResponse(answer.model_dump(mode="json"))
    return answer


@router.post(
    "/complete-oauth", response_model=CompleteOut, summary="Complete an OAuth flow (idempotent)"
)
async def complete_oauth(
    body: CompleteIn,
    access: OrgAccessDep,
    service: ServiceDep,
    wait: Annotated[
        int,
        Query(
            ge=0,
            le=MAX_COMPLETE_WAIT_SECONDS,
            description="Hold the answer up to this many seconds (0 to 60) until the flow is over "
            "(connected or failed), instead of answering `connected: false` at once while the "
            "user is still at the provider. 0: answer at once.",
        ),
    ] = 0,
) -> JSONResponse:
    answer = await service.complete(access, body.state_token, body.verifier, wait=wait)
    # `connection: null` is part of the documented shape; `error` appears only on failure.
    return JSONResponse(
        answer.model_dump(
            mode="json",
            exclude={name for name in ("error", "retry_after") if getattr(answer, name) is None},
        )
    )


# An administrator's app for one custom MCP server (SPEC §11). Here rather than with the other
# apps because it is checked by the custom flow's discovery; on this router, which is included
# before the apps' one, so `/apps/{app_key}` never sees `custom_mcp`.
@router.put(
    "/apps/custom_mcp",
    response_model=McpAppOut,
    tags=["OAuth apps"],
    summary="Bind an app to a custom MCP server",
    description="For an MCP server whose authorization server offers no dynamic client "
    "registration, or whose registrations an administrator wants to control: flows for "
    "`mcp_server_url` in the organization use this app from now on. The server and its "
    "authorization server are discovered and checked as for a flow; the app must be registered "
    "at that authorization server with `redirect_uri`. Binding the same `client_id` again "
    "replaces its secret; another client (or another authorization server) is refused with 409 "
    "while connections made with the current client live, since their tokens must never reach "
    "another client.",
    responses=errors(409, 502, 503),
)
async def bind_mcp_app(
    body: McpAppIn, access: AdminAccessDep, session: SessionDep, runtime: RuntimeDep
) -> McpAppOut:
    registration = await McpDiscovery(session, runtime).bind(
        access.organization_id,
        body.mcp_server_url,
        ClientCredentials(body.client_id, body.client_secret),
        body.token_endpoint_auth_method,
    )
    return _app_out(registration, runtime.settings.redirect_uri)


@router.get(
    "/apps/custom_mcp",
    response_model=McpAppList,
    tags=["OAuth apps"],
    summary="List the apps bound to custom MCP servers",
    description="The organization's bound apps, by server URL; never their secrets.",
)
async def list_mcp_apps(
    access: AdminAccessDep, session: SessionDep, runtime: RuntimeDep
) -> McpAppList:
    bound = await McpRegistrations(session, runtime).bound_of(access.organization_id)
    return McpAppList(data=[_app_out(app, runtime.settings.redirect_uri) for app in bound])


def _app_out(registration: McpClientRegistration, redirect_uri: str) -> McpAppOut:
    return McpAppOut(
        mcp_server_url=registration.server_url,
        client_id=registration.client_id,
        issuer=registration.issuer,
        token_endpoint_auth_method=registration.token_endpoint_auth_method,
        redirect_uri=redirect_uri,
        created_at=registration.created_at,
        updated_at=registration.updated_at,
    )


@router.delete(
    "/apps/custom_mcp",
    status_code=204,
    tags=["OAuth apps"],
    summary="Unbind the app of a custom MCP server",
    description="Flows for the server go back to dynamic client registration. Refused with "
    "409 while connections made with the app live: delete them first.",
    responses=errors(409),
)
async def unbind_mcp_app(
    mcp_server_url: Annotated[str, Query(min_length=1, max_length=MCP_SERVER_URL_MAX_LENGTH)],
    access: AdminAccessDep,
    session: SessionDep,
    runtime: RuntimeDep,
) -> Response:
    await McpDiscovery(session, runtime).unbind(access.organization_id, mcp_server_url)
    return Response(status_code=204)
