"""HTTP routes of the OAuth flow: authorize, callback (no API key), complete-oauth."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from personal_connectors.connect_page import pages as connect_pages
from personal_connectors.exceptions import InvalidStateToken
from personal_connectors.flows import binding
from personal_connectors.flows.exceptions import AuthorizationFailed, FlowFailed
from personal_connectors.flows.schemas import (
    AuthorizeIn,
    AuthorizeOut,
    CallbackData,
    CallbackOut,
    CompleteIn,
    CompleteOut,
)
from personal_connectors.flows.service import CallbackOutcome, CallbackParams, FlowService
from personal_connectors.http.context import request_id_of
from personal_connectors.http.dependencies import OrgAccessDep, RuntimeDep, SessionDep
from personal_connectors.http.envelope import error_response
from personal_connectors.http.openapi import PUBLIC, errors
from personal_connectors.http.pages import render_page, wants_json

router = APIRouter(tags=["OAuth flow"])

QueryText = Annotated[str | None, Query(max_length=4096)]


async def get_service(runtime: RuntimeDep, session: SessionDep) -> FlowService:
    return FlowService(session, runtime)


ServiceDep = Annotated[FlowService, Depends(get_service)]


@router.post(
    "/authorize",
    response_model=AuthorizeOut,
    response_model_exclude_none=True,  # the device-flow fields appear only for that grant
    summary="Start an OAuth flow",
    responses=errors(502, 503),  # the provider's metadata, PAR or device authorization
)
async def authorize(body: AuthorizeIn, access: OrgAccessDep, service: ServiceDep) -> AuthorizeOut:
    return await service.start(access, body)


def _with_query(url: str, extra: dict[str, str]) -> str:
    parts = urlsplit(url)
    query = [*parse_qsl(parts.query, keep_blank_values=True), *extra.items()]
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))


def _result_message(outcome: CallbackOutcome, state: str) -> dict[str, object]:
    message: dict[str, object] = {
        "type": "personal-connector",
        "state": state,
        "connected": outcome.connected,
        "connection_id": outcome.connection_id,
    }
    if outcome.error is not None:
        message["error"] = outcome.error.code
    return message


@router.get(
    "/callback",
    summary="The provider's redirect target (no API key)",
    responses={
        200: {"model": CallbackOut, "content": {"text/html": {"schema": {"type": "string"}}}},
        303: {"description": "Back to the return_url"},
        400: {"content": {"text/html": {"schema": {"type": "string"}}}},
    },
    openapi_extra=PUBLIC,
)
async def callback(
    request: Request,
    service: ServiceDep,
    runtime: RuntimeDep,
    code: QueryText = None,
    state: QueryText = None,
    error: QueryText = None,
    error_description: QueryText = None,
    iss: QueryText = None,
) -> Response:
    answer_json = wants_json(request)
    try:
        outcome = await service.handle_callback(
            CallbackParams(
                code=code,
                state=state,
                error=error,
                error_description=error_description,
                iss=iss,
                extra=dict(request.query_params),
            ),
            request.cookies,
        )
    except InvalidStateToken as exc:
        if answer_json:
            return error_response(exc, request_id_of(request.scope))
        if state is None or binding.flow_cookies(request.cookies):
            # A browser-bound flow (the connect page's popup) or a state-less provider's answer
            # that matches no flow of this browser: say so, and tell the connect page.
            return connect_pages.expired_page(runtime.catalog, unmatched=state is None)
        return render_page(
            "callback.html",
            status_code=400,
            title="This link has expired",
            text="This connection attempt is unknown, expired or used. Start again from the app.",
            connected=False,
            message=None,
            origins=[],
        )
    flow = outcome.flow
    if outcome.error is not None and outcome.error.code == binding.MISMATCH:
        # Another browser's flow: explain it, and never redirect to the flow's return_url.
        if answer_json:
            return error_response(_failure(outcome.error), request_id_of(request.scope))
        return connect_pages.mismatch_page()
    if flow.connect_session_id is not None:
        return connect_pages.flow_result_page(outcome, runtime)
    state = state or ""  # None only for a state-less provider's flow, found by its binding
    if flow.return_url:
        extra = {"state": state} if state else {}
        extra["connected"] = "true" if outcome.connected else "false"
        if outcome.connection_id:
            extra["connection_id"] = outcome.connection_id
        if outcome.error:
            extra["error"] = outcome.error.code
        elif not outcome.connected:
            extra["pending"] = "complete-oauth"
        # 303 so the browser follows with GET and never re-posts anything (RFC 9700 §4.12).
        return RedirectResponse(_with_query(flow.return_url, extra), status_code=303)
    if answer_json:
        if outcome.error is not None:
            return error_response(_failure(outcome.error), request_id_of(request.scope))
        data = CallbackData(
            connection_id=outcome.connection_id or "",
            app_key=flow.app_key,
            status=outcome.status or "authorized",
        )
        return JSONResponse(CallbackOut(data=data).model_dump(mode="json"))
    return render_page(
        "callback.html",
        status_code=200 if outcome.error is None else 400,
        **_page_text(outcome),
        connected=outcome.connected,
        message=_result_message(outcome, state),
        origins=sorted(runtime.settings.return_origins),
    )


def _failure(error: FlowFailed) -> AuthorizationFailed:
    return AuthorizationFailed(
        f"The flow failed: {error.code}.",
        details={"error": error.code, "description": error.description},
    )


def _page_text(outcome: CallbackOutcome) -> dict[str, str]:
    if outcome.error is not None:
        if outcome.error.code == "access_denied":
            return {
                "title": "Connection cancelled",
                "text": "Access was not granted. Nothing was connected.",
            }
        return {"title": "Connection failed", "text": outcome.error.description}
    if outcome.connected:
        return {"title": "Account connected", "text": "Your account is connected."}
    return {"title": "Almost done", "text": "Return to the app to finish connecting your account."}


@router.post(
    "/complete-oauth", response_model=CompleteOut, summary="Complete an OAuth flow (idempotent)"
)
async def complete_oauth(
    body: CompleteIn, access: OrgAccessDep, service: ServiceDep
) -> JSONResponse:
    answer = await service.complete(access, body.state_token)
    # `connection: null` is part of the documented shape; `error` appears only on failure.
    return JSONResponse(
        answer.model_dump(
            mode="json",
            exclude={name for name in ("error", "retry_after") if getattr(answer, name) is None},
        )
    )
