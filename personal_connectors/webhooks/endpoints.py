"""HTTP routes for an organization's webhook endpoints (admin or owner of the organization)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response

from personal_connectors.http.dependencies import AdminAccessDep, RuntimeDep, SessionDep
from personal_connectors.http.openapi import errors
from personal_connectors.models import ID_MAX_LENGTH
from personal_connectors.webhooks.schemas import (
    WebhookIn,
    WebhookList,
    WebhookOut,
    WebhookWithSecretOut,
)
from personal_connectors.webhooks.service import IssuedWebhook, WebhookService

router = APIRouter(tags=["Webhooks"])

EndpointId = Annotated[str, Path(min_length=1, max_length=ID_MAX_LENGTH)]


async def get_service(runtime: RuntimeDep, session: SessionDep) -> WebhookService:
    return WebhookService(session, runtime.sealer, runtime.settings)


ServiceDep = Annotated[WebhookService, Depends(get_service)]


def _with_secret(issued: IssuedWebhook) -> WebhookWithSecretOut:
    return WebhookWithSecretOut(**WebhookOut.of(issued.endpoint).model_dump(), secret=issued.secret)


@router.post(
    "/webhooks",
    response_model=WebhookWithSecretOut,
    status_code=201,
    summary="Add a webhook endpoint (its signing secret is shown only in this answer)",
    responses=errors(409),  # the organization has as many endpoints as it may
)
async def create_webhook(
    body: WebhookIn, access: AdminAccessDep, service: ServiceDep
) -> WebhookWithSecretOut:
    issued = await service.create(
        access.organization_id,
        body.url,
        event_types=body.event_types,
        description=body.description,
    )
    return _with_secret(issued)


@router.get("/webhooks", response_model=WebhookList, summary="List the webhook endpoints")
async def list_webhooks(access: AdminAccessDep, service: ServiceDep) -> WebhookList:
    endpoints = await service.list_for(access.organization_id)
    return WebhookList(data=[WebhookOut.of(endpoint) for endpoint in endpoints])


@router.delete(
    "/webhooks/{endpoint_id}",
    status_code=204,
    summary="Remove a webhook endpoint and its pending deliveries",
)
async def delete_webhook(
    endpoint_id: EndpointId, access: AdminAccessDep, service: ServiceDep
) -> Response:
    await service.delete(access.organization_id, endpoint_id)
    return Response(status_code=204)


@router.post(
    "/webhooks/{endpoint_id}/rotate-secret",
    response_model=WebhookWithSecretOut,
    summary="Replace the signing secret (the new one is shown only in this answer)",
)
async def rotate_webhook_secret(
    endpoint_id: EndpointId, access: AdminAccessDep, service: ServiceDep
) -> WebhookWithSecretOut:
    return _with_secret(await service.rotate_secret(access.organization_id, endpoint_id))
