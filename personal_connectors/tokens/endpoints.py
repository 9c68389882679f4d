"""The token route: what the platform's tools call before every provider API request.

The service's hot path, so it reads key, membership and connection in one query
(``TokenService.authorize``) instead of the generic ``OrgAccessDep`` and ``SessionDep``; on the
declared route that runs as a dependency, so authentication and membership are checked before
the request's own parameters are validated, as on every other route. The common request (no
``force_refresh``, no other parameter) takes the HTTP layer's shortcut (``http.direct``) with
the same functions in the same order.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import parse_qsl

from fastapi import Depends, FastAPI, Path, Query, Request, Response

from personal_connectors.config import API_PREFIX
from personal_connectors.http.dependencies import (
    CALLER_QUERY,
    RequestedEndUserDep,
    RequestedOrganizationDep,
    RuntimeDep,
    get_runtime,
    missing_organization,
    presented_api_key,
    rate_limited,
)
from personal_connectors.http.direct import add_direct_route
from personal_connectors.http.openapi import error_response, errors
from personal_connectors.identity.pct import is_exchanged_token
from personal_connectors.identity.service import IdentityService
from personal_connectors.models import ID_MAX_LENGTH
from personal_connectors.tokens.schemas import TokenOut
from personal_connectors.tokens.service import TokenRequest, TokenService


async def token_service(runtime: RuntimeDep) -> TokenService:
    return TokenService(None, runtime)


TokenServiceDep = Annotated[TokenService, Depends(token_service)]


async def token_request(
    request: Request,
    service: TokenServiceDep,
    organization_id: RequestedOrganizationDep,
    end_user_id: RequestedEndUserDep,
) -> TokenRequest:
    return await authorized(service, request, organization_id, end_user_id)


async def authorized(
    service: TokenService, request: Request, organization_id: str | None, end_user_id: str | None
) -> TokenRequest:
    """The caller and the connection of the request's path (none on a path without one: the
    MCP gateway's ``/mcp``), authorized and counted against the caller's rate limits."""
    presented = presented_api_key(request)
    connection_id = request.path_params.get("connection_id", "")
    if is_exchanged_token(presented):
        assert presented is not None
        caller = await service.authorize_exchanged(
            presented, organization_id, connection_id, end_user_id
        )
    else:
        if organization_id is None:
            async with service.runtime.sessions() as session:
                principal = await IdentityService(session).authenticate(presented)  # 401 first
            if not principal.is_service:
                raise missing_organization()
            organization_id = principal.organization_id or ""  # a service key's is implied
        caller = await service.authorize(presented, organization_id, connection_id, end_user_id)
    if service.runtime.rate_limits is not None:  # off: not even a call
        access = caller.access
        await rate_limited(request, service.runtime, access.principal, access.end_user_id)
    return caller


async def issue_token(
    # Declared for validation and the OpenAPI document; token_request has already used it.
    connection_id: Annotated[str, Path(min_length=1, max_length=ID_MAX_LENGTH)],
    caller: Annotated[TokenRequest, Depends(token_request)],
    service: TokenServiceDep,
    force_refresh: Annotated[
        bool, Query(description="Refresh even if the token is current.")
    ] = False,
    required_scopes: Annotated[
        str | None,
        Query(
            description="Scopes the caller needs, separated by spaces (e.g. `repo read:org`). "
            "When the connection lacks any of them: 409 `INSUFFICIENT_SCOPE`, with "
            "`details.missing_scopes` and `details.authorize` (the body of the `POST /authorize` "
            "that asks for them on this connection). Empty: no check."
        ),
    ] = None,
) -> Response:
    token = await service.issue(caller, force_refresh=force_refresh, scopes_text=required_scopes)
    # Already a TokenOut: encoded once here rather than validated again as the response model.
    return Response(token.model_dump_json(), media_type="application/json")


async def plain_token_request(request: Request) -> Response | None:
    """The shortcut's answer to a request with nothing to validate but what ``authorized``
    checks (the declared route's dependencies, the ``force_refresh`` default); None for any
    other request."""
    # As ``request.query_params`` reads it (the last of a repeated name wins), without building
    # its multi-dict on the busiest route.
    query = dict(parse_qsl(request.scope["query_string"].decode("latin-1"), keep_blank_values=True))
    if len(request.path_params["connection_id"]) > ID_MAX_LENGTH or not CALLER_QUERY.issuperset(
        query
    ):
        return None
    organization_id = query.get("organization_id") or query.get("organizationId")
    service = TokenService(None, await get_runtime(request))
    caller = await authorized(service, request, organization_id, query.get("end_user_id"))
    token = await service.issue(caller, force_refresh=False)
    return Response(token.model_dump_json(), media_type="application/json")


def add_token_route(app: FastAPI) -> None:
    """On the application's own router rather than an included one, which routing would match
    twice (once to choose the router, once inside it): this is the busiest route."""
    add_direct_route(
        app,
        f"{API_PREFIX}/{{connection_id}}/token",
        "POST",
        plain_token_request,
        endpoint=issue_token,
        response_model=TokenOut,
        summary="A valid access token for a connection (refreshed first when due)",
        tags=["Tokens"],
        responses={
            **errors(502, 503),
            409: {
                **error_response(409),
                "description": "`INSUFFICIENT_SCOPE` (`required_scopes` names a scope the "
                "connection lacks: `details.missing_scopes`, and `details.authorize`, the body "
                "of `POST /authorize` that asks for them), `REAUTHORIZATION_REQUIRED` (connect "
                "again) or `CONNECTION_DISABLED`.",
            },
        },
    )
