"""HTTP routes of the OAuth flow: authorize and complete-oauth (the provider's redirect back
is ``connect_page.callback``'s, since it answers the browser with the connect page's pages)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse

from personal_connectors.flows.schemas import (
    MAX_COMPLETE_WAIT_SECONDS,
    AuthorizeIn,
    AuthorizeOut,
    CompleteIn,
    CompleteOut,
    ConnectedAtOnce,
)
from personal_connectors.flows.service import FlowService
from personal_connectors.http.dependencies import (
    OrgAccessDep,
    RuntimeDep,
    SessionDep,
)
from personal_connectors.http.openapi import errors

router = APIRouter(tags=["OAuth flow"])


async def get_service(runtime: RuntimeDep, session: SessionDep) -> FlowService:
    return FlowService(session, runtime)


ServiceDep = Annotated[FlowService, Depends(get_service)]


@router.post(
    "/authorize",
    response_model=AuthorizeOut,
    response_model_exclude_none=True,  # the device-flow fields appear only for that grant
    summary="Start an OAuth flow",
    description="A catalog connector's flow; or with `connector_type: custom_mcp` and "
    "`mcp_server_url`, any remote MCP server's (its own authorization server, discovered). A "
    "custom MCP server that needs no authorization is connected at once: the answer is then "
    '`{"connected": true, "connection": {…}, "authorization_url": null}`.',
    # 429: too many pending flows; 502/503: the provider's metadata, PAR or device authorization
    responses=errors(429, 502, 503),
)
async def authorize(
    body: AuthorizeIn, access: OrgAccessDep, service: ServiceDep
) -> AuthorizeOut | JSONResponse:
    answer = await service.authorize(access, body)
    if isinstance(answer, ConnectedAtOnce):  # `authorization_url: null` is part of the shape
        return JSONResponse(answer.model_dump(mode="json"))
    return answer


@router.post(
    "/complete-oauth", response_model=CompleteOut, summary="Complete an OAuth flow (idempotent)"
)
async def complete_oauth(
    body: CompleteIn,
    access: OrgAccessDep,
    service: ServiceDep,
    wait: Annotated[
        int,
        Query(
            ge=0,
            le=MAX_COMPLETE_WAIT_SECONDS,
            description="Hold the answer up to this many seconds (0 to 60) until the flow is over "
            "(connected or failed), instead of answering `connected: false` at once while the "
            "user is still at the provider. 0: answer at once.",
        ),
    ] = 0,
) -> JSONResponse:
    answer = await service.complete(access, body.state_token, body.verifier, wait=wait)
    # `connection: null` is part of the documented shape; `error` appears only on failure.
    return JSONResponse(
        answer.model_dump(
            mode="json",
            exclude={name for name in ("error", "retry_after") if getattr(answer, name) is None},
        )
    )
