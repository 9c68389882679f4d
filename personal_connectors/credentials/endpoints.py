"""HTTP routes of credentials connections (SPEC §10): ``POST /credentials`` and
``PUT /{connection_id}/credentials``. The literal ``/credentials`` path is included before the
``/{connection_id}`` routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path
from fastapi.responses import JSONResponse

from personal_connectors.connections.schemas import ConnectionOut
from personal_connectors.credentials.schemas import CredentialsIn, CredentialsReplaceIn
from personal_connectors.credentials.service import CredentialsService
from personal_connectors.http.dependencies import (
    OrgAccessDep,
    RuntimeDep,
    SessionDep,
)
from personal_connectors.http.openapi import errors
from personal_connectors.models import ID_MAX_LENGTH

router = APIRouter(tags=["Credentials"])


async def get_service(runtime: RuntimeDep, session: SessionDep) -> CredentialsService:
    return CredentialsService(session, runtime)


ServiceDep = Annotated[CredentialsService, Depends(get_service)]


@router.post(
    "/credentials",
    response_model=ConnectionOut,
    status_code=201,
    summary="Connect an account with an API key, basic auth, client credentials or a signed JWT",
    description="The fields are checked against the catalog entry (400 `VALIDATION_ERROR` "
    "with `details.fields`), then proved with the provider: a token minted for the minting "
    "modes, the entry's check call made (401/403 from the provider: 400 "
    "`CREDENTIALS_REJECTED`, nothing stored). 201 for a new connection, 200 when the same "
    "account was connected before (its credentials are replaced).",
    responses={
        200: {"description": "The account's existing connection, updated."},
        **errors(502, 503),
    },
)
async def connect_with_credentials(
    body: CredentialsIn, access: OrgAccessDep, service: ServiceDep
) -> JSONResponse:
    connection, created = await service.connect(
        access,
        body.connector_type,
        body.credentials,
        name=body.name,
        integration_params=body.integration_params,
    )
    return JSONResponse(
        ConnectionOut.of(connection).model_dump(mode="json"), status_code=201 if created else 200
    )


@router.put(
    "/{connection_id}/credentials",
    response_model=ConnectionOut,
    summary="Replace a connection's credentials (a rotated key), proved as on connect",
    responses=errors(502, 503),
)
async def replace_credentials(
    connection_id: Annotated[str, Path(min_length=1, max_length=ID_MAX_LENGTH)],
    body: CredentialsReplaceIn,
    access: OrgAccessDep,
    service: ServiceDep,
) -> ConnectionOut:
    connection = await service.replace(access, connection_id, body.credentials, name=body.name)
    return ConnectionOut.of(connection)
