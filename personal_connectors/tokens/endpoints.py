"""The token route: what the platform's tools call before every provider API request.

It is the service's hot path, so it does not use the generic ``OrgAccessDep`` (one query for
the key, one for the membership) and ``SessionDep`` (a session held for the whole request):
``authorized`` (the short path's and ``token_request``'s) reads key, membership and
connection in one query (``TokenRepository``),
so that authentication and membership are still checked before the request's own parameters
are validated, exactly as on every other route.

FastAPI's per-request machinery (solving three dependencies, validating each query parameter,
validating and encoding the answer through the response model) cost more CPU than the whole
token read once that was lean. ``TokenRoute`` therefore answers the common request — no
``force_refresh``, a connection id of valid length — itself, with the same functions in the
same order, and hands every other request (a forced refresh, a parameter to validate, an
unknown one to ignore) to the handler FastAPI built from the declaration below. The declaration
stays the route's contract: the OpenAPI document, validation and its error envelopes are
FastAPI's.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any
from urllib.parse import parse_qsl

from fastapi import Depends, FastAPI, Path, Query, Request, Response
from fastapi.routing import APIRoute

from personal_connectors.config import API_PREFIX
from personal_connectors.http.dependencies import (
    RequestedOrganizationDep,
    get_runtime,
    missing_organization,
    presented_api_key,
    requested_organization,
)
from personal_connectors.http.openapi import errors
from personal_connectors.identity.service import IdentityService
from personal_connectors.tokens.schemas import TokenOut
from personal_connectors.tokens.service import TokenRequest, TokenService

CONNECTION_ID_MAX_LENGTH = 64
# Query parameters the short path understands; any other goes through FastAPI's handler.
_SHORT_PATH_QUERY = frozenset({"organization_id", "organizationId"})


class TokenRoute(APIRoute):
    """Answers plain token requests without FastAPI's parameter and response-model machinery."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        declared = super().get_route_handler()

        async def handler(request: Request) -> Response:
            # Parsed as Starlette's ``request.query_params`` parses it (the last value of a
            # repeated name wins there too), without building its multi-dict.
            query = dict(parse_qsl(request.scope["query_string"].decode("latin-1"), True))
            if len(
                request.path_params["connection_id"]
            ) > CONNECTION_ID_MAX_LENGTH or not _SHORT_PATH_QUERY.issuperset(query):
                return await declared(request)
            # What FastAPI would pass: the same dependency, the declared default of force_refresh.
            organization_id = await requested_organization(
                query.get("organization_id"), query.get("organizationId")
            )
            service = TokenService(None, await get_runtime(request))
            caller = await authorized(service, request, organization_id)
            token = await service.issue(caller, force_refresh=False)
            # TokenOut is what the declared handler validates and encodes the same way.
            return Response(token.model_dump_json(), media_type="application/json")

        return handler


async def token_request(
    request: Request, organization_id: RequestedOrganizationDep
) -> TokenRequest:
    # The runtime called for, not injected: each dependency costs.
    return await authorized(
        TokenService(None, await get_runtime(request)), request, organization_id
    )


async def authorized(
    service: TokenService, request: Request, organization_id: str | None
) -> TokenRequest:
    presented = presented_api_key(request)
    if organization_id is None:
        async with service.runtime.sessions() as session:
            await IdentityService(session).authenticate(presented)  # a 401 comes first
        raise missing_organization()
    return await service.authorize(presented, organization_id, request.path_params["connection_id"])


async def issue_token(
    # Declared for validation and the OpenAPI document; token_request has already used it.
    connection_id: Annotated[str, Path(min_length=1, max_length=CONNECTION_ID_MAX_LENGTH)],
    request: Request,
    caller: Annotated[TokenRequest, Depends(token_request)],
    force_refresh: Annotated[
        bool, Query(description="Refresh even if the token is current.")
    ] = False,
) -> TokenOut:
    return await TokenService(None, await get_runtime(request)).issue(
        caller, force_refresh=force_refresh
    )


def install_token_route(app: FastAPI) -> None:
    """Add the token route to ``app``'s own router, where routing finds it without the layer an
    included router adds (FastAPI matches an included router twice: once to choose it, once
    inside it), and first of its routes: they are tried in order, and FastAPI has added its
    documentation routes (``/openapi.json``, ``/docs``, …) by then; no other path is two
    segments under the API prefix ending in ``/token``, so it shadows nothing."""
    app.router.add_api_route(
        f"{API_PREFIX}/{{connection_id}}/token",
        issue_token,
        methods=["POST"],
        response_model=TokenOut,
        summary="A valid access token for a connection (refreshed first when due)",
        tags=["Tokens"],
        responses=errors(409, 502, 503),
        route_class_override=TokenRoute,
    )
    route = app.router.routes.pop()
    assert isinstance(route, APIRoute) and route.endpoint is issue_token
    app.router.routes.insert(0, route)
