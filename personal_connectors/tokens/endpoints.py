"""The token route: what the platform's tools call before every provider API request.

It is the service's hot path, so it does not use the generic ``OrgAccessDep`` (one query for
the key, one for the membership) and ``SessionDep`` (a session held for the whole request):
``token_request`` reads key, membership and connection in one query on a short session of its
own (``TokenRepository``), as a dependency, so that authentication and membership are still
checked before the request's own parameters are validated, exactly as on every other route.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request

from personal_connectors.http.dependencies import (
    RequestedOrganizationDep,
    get_runtime,
    missing_organization,
    presented_api_key,
)
from personal_connectors.identity.service import IdentityService
from personal_connectors.tokens.schemas import TokenOut
from personal_connectors.tokens.service import TokenRequest, TokenService

router = APIRouter(tags=["Tokens"])


async def token_request(
    request: Request, organization_id: RequestedOrganizationDep
) -> TokenRequest:
    runtime = await get_runtime(request)  # called, not injected: each dependency costs
    presented = presented_api_key(request)
    if organization_id is None:
        async with runtime.sessions() as session:
            await IdentityService(session).authenticate(presented)  # a 401 comes first
        raise missing_organization()
    return await TokenService(None, runtime).authorize(
        presented, organization_id, request.path_params["connection_id"]
    )


@router.post(
    "/{connection_id}/token",
    response_model=TokenOut,
    summary="A valid access token for a connection (refreshed first when due)",
)
async def issue_token(
    # Declared for validation and the OpenAPI document; token_request has already used it.
    connection_id: Annotated[str, Path(min_length=1, max_length=64)],
    request: Request,
    caller: Annotated[TokenRequest, Depends(token_request)],
    force_refresh: Annotated[
        bool, Query(description="Refresh even if the token is current.")
    ] = False,
) -> TokenOut:
    runtime = await get_runtime(request)
    return await TokenService(None, runtime).issue(caller, force_refresh=force_refresh)
