"""HTTP routes of the connector catalog (``/available``); literal paths, so the application
includes them before the connections' ``/{connection_id}``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from personal_connectors.apps.endpoints import AppKey
from personal_connectors.available.schemas import ConnectorList, ConnectorOut
from personal_connectors.available.service import CatalogService
from personal_connectors.http.dependencies import OrgAccessDep, RuntimeDep, SessionDep

router = APIRouter(tags=["Catalog"])


async def get_service(runtime: RuntimeDep, session: SessionDep) -> CatalogService:
    return CatalogService(session, runtime)


ServiceDep = Annotated[CatalogService, Depends(get_service)]


@router.get("/available", response_model=ConnectorList, summary="The connectors on offer")
async def list_available(access: OrgAccessDep, service: ServiceDep) -> ConnectorList:
    return ConnectorList(data=await service.list_for(access))


@router.get("/available/{tool_key}", response_model=ConnectorOut, summary="One connector")
async def get_available(
    tool_key: AppKey, access: OrgAccessDep, service: ServiceDep
) -> ConnectorOut:
    return await service.get_for(access, tool_key)
