"""HTTP routes for organization OAuth apps (admin or owner of the organization)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response

from personal_connectors.apps.schemas import OAuthAppIn, OAuthAppList, OAuthAppOut
from personal_connectors.apps.service import OAuthAppService
from personal_connectors.http.dependencies import AdminAccessDep, RuntimeDep, SessionDep
from personal_connectors.models import OAuthApp

router = APIRouter(tags=["OAuth apps"])

AppKey = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_-]*$")]


async def get_service(runtime: RuntimeDep, session: SessionDep) -> OAuthAppService:
    return OAuthAppService(session, runtime.sealer, runtime.catalog)


ServiceDep = Annotated[OAuthAppService, Depends(get_service)]


def _out(app: OAuthApp, redirect_uri: str) -> OAuthAppOut:
    return OAuthAppOut(
        app_key=app.app_key,
        client_id=app.client_id,
        scopes=app.scopes,
        integration_params=app.integration_params or {},
        source="organization" if app.organization_id else "service",
        redirect_uri=redirect_uri,
        created_at=app.created_at,
        updated_at=app.updated_at,
    )


@router.put(
    "/apps/{app_key}", response_model=OAuthAppOut, summary="Set the organization's OAuth app"
)
async def set_app(
    app_key: AppKey,
    body: OAuthAppIn,
    access: AdminAccessDep,
    service: ServiceDep,
    runtime: RuntimeDep,
) -> OAuthAppOut:
    app = await service.configure(
        access.organization_id,
        app_key,
        client_id=body.client_id,
        client_secret=body.client_secret,
        scopes=body.scopes,
        integration_params=body.integration_params,
    )
    return _out(app, runtime.settings.redirect_uri)


@router.get("/apps", response_model=OAuthAppList, summary="List the OAuth apps in effect")
async def list_apps(
    access: AdminAccessDep, service: ServiceDep, runtime: RuntimeDep
) -> OAuthAppList:
    apps = await service.visible_to(access.organization_id)
    return OAuthAppList(data=[_out(app, runtime.settings.redirect_uri) for app in apps])


@router.delete("/apps/{app_key}", status_code=204, summary="Remove the organization's OAuth app")
async def delete_app(app_key: AppKey, access: AdminAccessDep, service: ServiceDep) -> Response:
    await service.delete(access.organization_id, app_key)
    return Response(status_code=204)
