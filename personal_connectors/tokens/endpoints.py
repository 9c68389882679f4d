"""The token route: what the platform's tools call before every provider API request."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query

from personal_connectors.http.dependencies import OrgAccessDep, RuntimeDep, SessionDep
from personal_connectors.tokens.schemas import TokenOut
from personal_connectors.tokens.service import TokenService

router = APIRouter(tags=["Tokens"])


def get_service(runtime: RuntimeDep, session: SessionDep) -> TokenService:
    return TokenService(session, runtime)


@router.post(
    "/{connection_id}/token",
    response_model=TokenOut,
    summary="A valid access token for a connection (refreshed first when due)",
)
async def issue_token(
    connection_id: Annotated[str, Path(min_length=1, max_length=64)],
    access: OrgAccessDep,
    service: Annotated[TokenService, Depends(get_service)],
    force_refresh: Annotated[
        bool, Query(description="Refresh even if the token is current.")
    ] = False,
) -> TokenOut:
    return await service.issue(access, connection_id, force_refresh=force_refresh)
