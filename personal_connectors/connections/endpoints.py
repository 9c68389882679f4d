"""HTTP routes for a caller's connections."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response

from personal_connectors.connections.schemas import ConnectionOut, ConnectionStatusFilter
from personal_connectors.connections.service import ConnectionService
from personal_connectors.http.dependencies import (
    OptionalOrgAccessDep,
    OrgAccessDep,
    PrincipalDep,
    RuntimeDep,
    SessionDep,
)

router = APIRouter(tags=["Connections"])

ConnectionId = Annotated[str, Path(min_length=1, max_length=64)]


def get_service(runtime: RuntimeDep, session: SessionDep) -> ConnectionService:
    return ConnectionService(session, runtime)


ServiceDep = Annotated[ConnectionService, Depends(get_service)]


@router.get("", response_model=list[ConnectionOut], summary="List the caller's connections")
@router.get("/", response_model=list[ConnectionOut], include_in_schema=False)
async def list_connections(
    access: OrgAccessDep,
    service: ServiceDep,
    app_key: Annotated[str | None, Query(max_length=64)] = None,
    status: ConnectionStatusFilter | None = None,
) -> list[ConnectionOut]:
    connections = await service.list_for(
        access, app_key=app_key, status=status.value if status else None
    )
    return [ConnectionOut.of(connection) for connection in connections]


@router.get("/{connection_id}", response_model=ConnectionOut, summary="One connection")
async def get_connection(
    connection_id: ConnectionId, access: OrgAccessDep, service: ServiceDep
) -> ConnectionOut:
    connection = await service.get_for(access.principal, connection_id, access.organization_id)
    return ConnectionOut.of(connection)


@router.delete("/{connection_id}", status_code=204, summary="Disconnect (revoke at the provider)")
async def delete_connection(
    connection_id: ConnectionId,
    principal: PrincipalDep,
    access: OptionalOrgAccessDep,
    service: ServiceDep,
) -> Response:
    organization_id = access.organization_id if access else None
    await service.disconnect(principal, connection_id, organization_id)
    return Response(status_code=204)
