"""The browser's side of a flow, with no API key: the launch page (whose account the connection
will join) and the provider's redirect back (``GET /callback``), answered with the connect page's
result page for its flows, else a redirect to the flow's ``return_url``, a small page, or JSON for
a client that asks for it."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import parse_qs

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from personal_connectors.config import API_PREFIX, origin_of
from personal_connectors.connect_page import pages as connect_pages
from personal_connectors.exceptions import InvalidStateToken
from personal_connectors.flows import binding
from personal_connectors.flows.endpoints import ServiceDep
from personal_connectors.flows.exceptions import (
    LAUNCH_REFUSED_TEXT,
    MISMATCH,
    AuthorizationFailed,
    FlowFailed,
    failure_text,
    page_code,
)
from personal_connectors.flows.return_url import with_query
from personal_connectors.flows.schemas import CallbackData, CallbackOut
from personal_connectors.flows.service import CallbackOutcome, CallbackParams
from personal_connectors.http.context import request_id_of
from personal_connectors.http.dependencies import RuntimeDep, SessionDep
from personal_connectors.http.envelope import error_response
from personal_connectors.http.openapi import PUBLIC
from personal_connectors.http.pages import render_page, wants_json

router = APIRouter(tags=["OAuth flow"])

QueryText = Annotated[str | None, Query(max_length=4096)]


# The redirect's URL carries a code or verifier: no Referer to the page it leads to (no-store
# comes with every API answer, from the request context).
_NO_REFERRER = {"Referrer-Policy": "no-referrer"}


def _launch_expired() -> Response:
    return render_page(
        "message.html",
        status_code=400,
        ok=False,
        title="This link has expired",
        text="This sign-in link is unknown, expired or was already used. Start again from the app.",
    )


@router.get(binding.LAUNCH_PATH.removeprefix(API_PREFIX), include_in_schema=False)
async def launch_page(runtime: RuntimeDep, session: SessionDep, t: QueryText = None) -> Response:
    """A flow's launch URL: says whose account the connection will join, and asks to continue.
    Nothing changes here (a link preview does not use the link up)."""
    pending = await binding.pending_launch(session, runtime, t)
    if pending is None:
        return _launch_expired()
    entry = runtime.catalog.get(pending.flow.app_key)
    owner = (
        f"{pending.user_name} ({pending.user_email})" if pending.user_name else pending.user_email
    )
    page = render_page(
        "launch.html",
        # A custom MCP server's flow has no entry: its name as given, else its URL.
        connector=entry.display_name
        if entry
        else pending.flow.display_name or pending.flow.mcp_server_url or pending.flow.app_key,
        owner=owner,
        organization=pending.organization_name,
        token=t,
        action=binding.LAUNCH_PATH,
    )
    # The Continue POST is answered by a redirect to the provider: allow that form target.
    page.headers["Content-Security-Policy"] = page.headers["Content-Security-Policy"].replace(
        "form-action 'self'", f"form-action 'self' {origin_of(pending.provider_url)}"
    )
    page.headers["Referrer-Policy"] = "same-origin"  # the POST must carry our Origin
    return page


@router.post(binding.LAUNCH_PATH.removeprefix(API_PREFIX), include_in_schema=False)
async def launch_decision(request: Request, runtime: RuntimeDep, session: SessionDep) -> Response:
    """The launch page's answer: Continue binds the flow to this browser (once) and goes on to
    the provider; "This is not me" ends the flow. Only a click on our own page counts: another
    site's form posting here is refused (it could otherwise launch a flow in a victim's browser
    without the page ever being seen)."""
    if not binding.same_origin(request.headers, runtime.settings):
        return render_page(
            "message.html",
            status_code=403,
            ok=False,
            title="Sign-in refused",
            text="This sign-in was not confirmed on this service's own page, so it was refused.",
        )
    fields = parse_qs((await request.body()).decode("utf-8", "replace"))
    token = fields.get("t", [""])[0]
    if fields.get("decision", [""])[0] == "refuse":
        if not await binding.refuse_launch(session, runtime, token):
            return _launch_expired()
        return render_page(
            "message.html", ok=True, title="Nothing was connected", text=LAUNCH_REFUSED_TEXT
        )
    launched = await binding.launch(session, runtime, token)
    if launched is None:
        return _launch_expired()
    response = RedirectResponse(launched.provider_url, status_code=303, headers=_NO_REFERRER)
    binding.set_cookie(response, runtime.settings, launched.flow_id, launched.secret)
    return response


def _result_message(outcome: CallbackOutcome, state: str) -> dict[str, object]:
    message: dict[str, object] = {
        "type": "personal-connector",
        "state": state,
        "connected": outcome.connected,
        "connection_id": outcome.connection_id,
    }
    if outcome.error is not None:
        # Only codes of the fixed vocabulary go into the page; others read `provider_error`.
        message["error"] = page_code(outcome.error.code)
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
    if outcome.error is not None and outcome.error.code == MISMATCH:
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
        if outcome.verifier is not None:
            extra["verifier"] = outcome.verifier
        # 303 so the browser follows with GET and never re-posts anything (RFC 9700 §4.12).
        return RedirectResponse(
            with_query(flow.return_url, extra), status_code=303, headers=_NO_REFERRER
        )
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
    """The callback's JSON answer: the code and its fixed sentence, never the provider's text."""
    return AuthorizationFailed(
        f"The flow failed: {error.code}.",
        details={"error": error.code, "description": failure_text(error.code)},
    )


def _page_text(outcome: CallbackOutcome) -> dict[str, str]:
    if outcome.error is not None:
        if outcome.error.code == "access_denied":
            return {
                "title": "Connection cancelled",
                "text": "Access was not granted. Nothing was connected.",
            }
        return {"title": "Connection failed", "text": failure_text(outcome.error.code)}
    if outcome.connected:
        return {"title": "Account connected", "text": "Your account is connected."}
    return {"title": "Almost done", "text": "Return to the app to finish connecting your account."}
