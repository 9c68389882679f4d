"""HTTP routes for a caller's connections.

``by_tool_router`` holds the literal ``/connections/…`` paths; the application includes it
before ``router``, whose ``/{connection_id}/…`` would otherwise claim them.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response

from personal_connectors.apps.endpoints import AppKey
from personal_connectors.connections.checks import ConnectionChecker, health_of
from personal_connectors.connections.repository import ListFilters
from personal_connectors.connections.schemas import (
    ActiveIn,
    ActiveOut,
    CheckResultOut,
    ConnectionOut,
    ConnectionStatusFilter,
    HealthOut,
    LabelsIn,
    McpCheckResultOut,
    McpTestDetails,
    ToolConnectionOut,
    ToolConnectionsOut,
    ToolListOut,
    ToolOut,
    ToolsData,
    ToolsIn,
    ToolsOut,
)
from personal_connectors.connections.service import ConnectionService
from personal_connectors.connections.tags import parse_tag_filters
from personal_connectors.http.dependencies import (
    ListingAccessDep,
    OptionalOrgAccessDep,
    OrgAccessDep,
    PrincipalDep,
    RuntimeDep,
    SessionDep,
)
from personal_connectors.http.openapi import ORGANIZATION_OPTIONAL
from personal_connectors.http.paging import NEXT_LINK_RESPONSE, PageDep, set_next_link
from personal_connectors.mcp_servers.service import McpService, tool_enabled
from personal_connectors.models import ID_MAX_LENGTH

router = APIRouter(tags=["Connections"])
by_tool_router = APIRouter(tags=["Connections"])

ConnectionId = Annotated[str, Path(min_length=1, max_length=ID_MAX_LENGTH)]


async def get_service(runtime: RuntimeDep, session: SessionDep) -> ConnectionService:
    return ConnectionService(session, runtime)


async def get_checker(runtime: RuntimeDep, session: SessionDep) -> ConnectionChecker:
    return ConnectionChecker(session, runtime)


ServiceDep = Annotated[ConnectionService, Depends(get_service)]
CheckerDep = Annotated[ConnectionChecker, Depends(get_checker)]


@by_tool_router.get(
    "/connections/{tool_key}",
    response_model=ToolConnectionsOut,
    summary="The caller's accounts at one connector, active and disabled",
)
async def list_tool_connections(
    tool_key: AppKey, access: OrgAccessDep, service: ServiceDep, runtime: RuntimeDep
) -> ToolConnectionsOut:
    entry = runtime.catalog.require(tool_key)
    connections = await service.list_for(access, app_key=tool_key)
    return ToolConnectionsOut(
        tool_key=tool_key,
        connections=[ToolConnectionOut.of(one, entry.display_name) for one in connections],
    )


@by_tool_router.patch(
    "/connections/{connection_id}/active",
    response_model=ActiveOut,
    summary="Disable or enable a connection (its tokens are kept)",
)
async def set_active(
    connection_id: ConnectionId, body: ActiveIn, access: OrgAccessDep, service: ServiceDep
) -> ActiveOut:
    connection = await service.set_active(access, connection_id, body.is_active)
    return ActiveOut(id=connection.id, is_active=connection.is_active)


@router.get(
    "",
    response_model=list[ConnectionOut],
    summary="List the caller's connections",
    responses=NEXT_LINK_RESPONSE,
)
@router.get("/", response_model=list[ConnectionOut], include_in_schema=False)
async def list_connections(
    request: Request,
    response: Response,
    access: ListingAccessDep,
    service: ServiceDep,
    checker: CheckerDep,
    runtime: RuntimeDep,
    page: PageDep,
    app_key: Annotated[str | None, Query(max_length=64)] = None,
    status: ConnectionStatusFilter | None = None,
    tag: Annotated[
        list[str],
        Query(
            description="`key:value`; repeat it for several tags, all of which must match.",
        ),
    ] = [],  # noqa: B006 (FastAPI copies the default; a list is how it reads repeated params)
    force_check: Annotated[
        bool,
        Query(
            alias="forceCheck",
            description="Check each connection with its provider before answering.",
        ),
    ] = False,
) -> list[ConnectionOut]:
    """Newest first, one page at a time: the next page's URL is in the `Link` header (none on
    the last page); the body is the bare array."""
    filters = ListFilters(
        app_key=app_key,
        status=status.value if status else None,
        tags=tuple(parse_tag_filters(tag)),
    )
    if force_check:
        listed = await checker.page_checked(access, page, filters)
    else:
        listed = await service.page_for(access, page, filters)
    set_next_link(response, request, runtime.settings.base_url, listed.next)
    return [ConnectionOut.of(connection) for connection in listed.items]


@router.get("/{connection_id}", response_model=ConnectionOut, summary="One connection")
async def get_connection(
    connection_id: ConnectionId, access: OrgAccessDep, service: ServiceDep
) -> ConnectionOut:
    connection = await service.get_in(access, connection_id)
    return ConnectionOut.of(connection)


@router.patch(
    "/{connection_id}",
    response_model=ConnectionOut,
    summary="Change the connection's tags and metadata (an RFC 7396 merge patch)",
)
async def update_connection(
    connection_id: ConnectionId, body: LabelsIn, access: OrgAccessDep, service: ServiceDep
) -> ConnectionOut:
    connection = await service.update_labels(
        access, connection_id, body.model_dump(include=body.model_fields_set)
    )
    return ConnectionOut.of(connection)


@router.get(
    "/{connection_id}/health",
    response_model=HealthOut,
    summary="The connection's health as last checked (no call to the provider)",
)
async def get_health(
    connection_id: ConnectionId, access: OrgAccessDep, service: ServiceDep
) -> HealthOut:
    connection = await service.get_in(access, connection_id)
    health = health_of(connection)
    return HealthOut(
        credential_id=connection.id,
        tool_key=connection.app_key,
        status=health.status,
        is_active=connection.is_active,
        connection_status=connection.status,
        reason=health.reason,
        last_checked_at=connection.last_checked_at,
    )


@router.post(
    "/{connection_id}/test",
    response_model=McpCheckResultOut | CheckResultOut,
    summary="Check the connection with a read-only call at the provider",
)
async def check_connection(
    connection_id: ConnectionId, access: OrgAccessDep, checker: CheckerDep
) -> CheckResultOut:
    """For a connection whose connector runs an MCP server, the check is a session with that
    server and its tool list, and the answer adds `status` and the server's `details`."""
    connection, outcome = await checker.test(access, connection_id)
    result = CheckResultOut(
        credential_id=connection.id,
        tool_key=connection.app_key,
        success=outcome.success,
        action_tested=outcome.action,
        message=outcome.message,
        execution_time_ms=outcome.execution_time_ms,
        tested_at=outcome.tested_at,
    )
    probe = outcome.mcp
    if probe is None:
        return result
    return McpCheckResultOut(
        **result.model_dump(),
        status="healthy" if probe.healthy else "unhealthy",
        details=McpTestDetails(
            server_url=probe.server_url,
            response_time_ms=probe.response_time_ms,
            server_version=probe.server_version,
            available_tools=probe.available_tools,
        ),
    )


@router.get(
    "/{connection_id}/tools",
    response_model=ToolListOut,
    response_model_exclude_unset=True,
    summary="The tools of the connection's MCP server",
)
async def list_tools(
    connection_id: ConnectionId,
    access: OrgAccessDep,
    service: ServiceDep,
    runtime: RuntimeDep,
    session: SessionDep,
    force_refresh: Annotated[
        bool,
        Query(
            alias="forceRefresh",
            description="Ask the server again instead of answering from the cache.",
        ),
    ] = False,
) -> ToolListOut:
    """Every tool the server lists (all pages), cached per connection for
    `CONNECTORS_MCP_TOOLS_TTL_SECONDS`; `enabled` says whether the platform may use it. A
    connection whose connector has no MCP server is 400."""
    connection = await service.get_in(access, connection_id)
    listing = await McpService(session, runtime).tools(connection, force_refresh=force_refresh)
    return ToolListOut(
        object="list",
        data=[ToolOut.of(tool, tool_enabled(connection, tool["name"])) for tool in listing.tools],
    )


@router.patch(
    "/{connection_id}/tools",
    response_model=ToolsOut,
    summary="Choose which of the connection's tools the platform may use",
)
async def configure_tools(
    connection_id: ConnectionId, body: ToolsIn, access: OrgAccessDep, service: ServiceDep
) -> ToolsOut:
    connection = await service.configure_tools(
        access,
        connection_id,
        enabled=body.enabled,
        allowed_tools=body.allowed_tools,
    )
    return ToolsOut(
        message="Tool configuration updated.",
        data=ToolsData(
            connection_id=connection.id,
            enabled=connection.tools_enabled,
            allowed_tools=connection.allowed_tools,
        ),
    )


@router.delete(
    "/{connection_id}",
    status_code=204,
    summary="Disconnect (revoke at the provider)",
    openapi_extra=ORGANIZATION_OPTIONAL,
)
async def delete_connection(
    connection_id: ConnectionId,
    principal: PrincipalDep,
    access: OptionalOrgAccessDep,
    service: ServiceDep,
) -> Response:
    if access is None:
        await service.disconnect(principal, connection_id)
    else:  # (as the end user a service key names)
        await service.disconnect(access.principal, connection_id, access.organization_id)
    return Response(status_code=204)
