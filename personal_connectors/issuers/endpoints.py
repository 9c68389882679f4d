"""HTTP routes of the issuers an organization trusts (owners and admins)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response

from personal_connectors.http.dependencies import AdminAccessDep, RuntimeDep, SessionDep
from personal_connectors.http.openapi import errors
from personal_connectors.issuers.schemas import TrustedIssuerIn, TrustedIssuerOut
from personal_connectors.issuers.service import TrustedIssuerService
from personal_connectors.models import ID_MAX_LENGTH

router = APIRouter(tags=["Token exchange"])

IssuerId = Annotated[str, Path(min_length=1, max_length=ID_MAX_LENGTH)]


async def get_service(runtime: RuntimeDep, session: SessionDep) -> TrustedIssuerService:
    return TrustedIssuerService(session, runtime.settings)


ServiceDep = Annotated[TrustedIssuerService, Depends(get_service)]


@router.post(
    "/trusted-issuers",
    response_model=TrustedIssuerOut,
    status_code=201,
    summary="Trust an identity provider's JWTs to name end users (RFC 8693 token exchange)",
    responses=errors(409),
)
async def create_trusted_issuer(
    body: TrustedIssuerIn, access: AdminAccessDep, service: ServiceDep
) -> TrustedIssuerOut:
    return TrustedIssuerOut.of(await service.create(access.organization_id, body))


@router.get(
    "/trusted-issuers", response_model=list[TrustedIssuerOut], summary="The trusted issuers"
)
async def list_trusted_issuers(
    access: AdminAccessDep, service: ServiceDep
) -> list[TrustedIssuerOut]:
    return [TrustedIssuerOut.of(row) for row in await service.list_for(access.organization_id)]


@router.get(
    "/trusted-issuers/{issuer_id}", response_model=TrustedIssuerOut, summary="A trusted issuer"
)
async def get_trusted_issuer(
    issuer_id: IssuerId, access: AdminAccessDep, service: ServiceDep
) -> TrustedIssuerOut:
    return TrustedIssuerOut.of(await service.get(access.organization_id, issuer_id))


@router.delete("/trusted-issuers/{issuer_id}", status_code=204, summary="Stop trusting an issuer")
async def delete_trusted_issuer(
    issuer_id: IssuerId, access: AdminAccessDep, service: ServiceDep
) -> Response:
    await service.delete(access.organization_id, issuer_id)
    return Response(status_code=204)
