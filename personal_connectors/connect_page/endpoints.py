"""HTTP routes of connect sessions (API) and of the hosted connect page (browser).

``api_router`` lives under the API prefix and must be included before the ``/{connection_id}``
catch-all; ``page_router`` serves ``/connect…`` at the root, outside the API.
"""

from __future__ import annotations

from importlib import resources
from typing import Annotated
from urllib.parse import parse_qs, urlencode

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from personal_connectors.config import Settings, origin_of
from personal_connectors.connect_page import pages
from personal_connectors.connect_page.exceptions import (
    ConnectorNotAllowed,
    ConnectSessionInvalid,
    CrossSiteRequest,
)
from personal_connectors.connect_page.schemas import (
    AttemptStateOut,
    ConnectSessionIn,
    ConnectSessionOut,
)
from personal_connectors.connect_page.service import (
    ActiveSession,
    ConnectService,
    csrf_matches,
)
from personal_connectors.exceptions import APIError, ConnectorNotConfigured, ValidationFailed
from personal_connectors.flows import binding
from personal_connectors.flows.exceptions import TooManyPendingFlows
from personal_connectors.flows.return_url import allowed_return_url
from personal_connectors.http.context import request_id_of
from personal_connectors.http.dependencies import OrgAccessDep, RuntimeDep, SessionDep
from personal_connectors.http.envelope import error_response
from personal_connectors.http.openapi import errors
from personal_connectors.http.pages import render_page, wants_json
from personal_connectors.models import ID_MAX_LENGTH, utcnow
from personal_connectors.providers.schema import CREDENTIALS_MODES, ProviderEntry

api_router = APIRouter(tags=["Connect page"])
page_router = APIRouter(include_in_schema=False)

SESSION_COOKIE = "pc_connect"
QueryText = Annotated[str | None, Query(max_length=4096)]
_STATIC = {"connect.js", "result.js"}
_NO_STORE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


async def get_service(runtime: RuntimeDep, session: SessionDep) -> ConnectService:
    return ConnectService(session, runtime)


ServiceDep = Annotated[ConnectService, Depends(get_service)]


# --- API --------------------------------------------------------------------------------------


@api_router.post(
    "/connect-sessions",
    status_code=201,
    response_model=ConnectSessionOut,
    responses=errors(429),  # too many live connect sessions
    summary="Create a link to the hosted connect page for the caller",
)
async def create_connect_session(
    body: ConnectSessionIn, access: OrgAccessDep, service: ServiceDep
) -> ConnectSessionOut:
    return await service.create(access, body)


# --- the page ---------------------------------------------------------------------------------


def _set_session_cookie(response: Response, settings: Settings, active: ActiveSession) -> None:
    """HttpOnly and Path=/connect: only the page's own routes ever see the session token."""
    remaining = int((active.record.expires_at - utcnow()).total_seconds())
    response.set_cookie(
        SESSION_COOKIE,
        active.token,
        max_age=max(remaining, 1),
        path=pages.CONNECT_PATH,
        secure=settings.base_url.startswith("https://"),
        httponly=True,
        samesite="lax",
    )


async def _active(request: Request, service: ConnectService) -> ActiveSession:
    return await service.authenticate(request.cookies.get(SESSION_COOKIE))


@page_router.get("/connect")
async def connect_page(
    request: Request,
    service: ServiceDep,
    runtime: RuntimeDep,
    session: QueryText = None,
    result: QueryText = None,
    error: QueryText = None,
    connector: QueryText = None,
) -> Response:
    if session is not None:
        # A link opened from anywhere but this service's own pages (another site, a mail, a
        # chat: Sec-Fetch-Site other than same-origin, or none sent) first says whose session
        # it is and waits for a click here, so a link cannot plant someone else's session.
        try:
            active = await service.authenticate(session)
        except ConnectSessionInvalid:
            return pages.session_error_page(from_link=True)
        if request.headers.get("sec-fetch-site") != "same-origin":
            return pages.session_confirm_page(await service.owner(active.record), session)
        return _enter(active, runtime)
    try:
        active = await _active(request, service)
    except ConnectSessionInvalid:
        return pages.session_error_page(from_link=False)
    view = await service.page(active)
    page = render_page(
        "connect.html",
        connectors=view.connectors,
        connections=view.connections,
        owner=view.owner,
        csrf_token=active.csrf_token,
        app_origins=pages.app_origins(runtime.settings, active.record.return_url),
        return_url=allowed_return_url(active.record.return_url, runtime.settings),
        notice=pages.notice(result, error, connector, runtime.catalog),
        script=pages.SCRIPT_PATH,
    )
    pages.open_up_for_page(page)
    return page


def _enter(active: ActiveSession, runtime: RuntimeDep) -> Response:
    """Trade the link's token for a cookie and drop it from the address bar and history."""
    response = RedirectResponse(pages.CONNECT_PATH, status_code=303, headers=_NO_STORE)
    _set_session_cookie(response, runtime.settings, active)
    return response


@page_router.post("/connect/session")
async def confirm_session(request: Request, service: ServiceDep, runtime: RuntimeDep) -> Response:
    """The interstitial's answer: Continue opens the page; "This is not me" ends the session."""
    if not binding.same_origin(request.headers, runtime.settings):
        return pages.error_page(
            "Not opened",
            "This connect link was not confirmed on this service's own page.",
            status_code=403,
        )
    fields = parse_qs((await request.body()).decode("utf-8", "replace"))
    try:
        active = await service.authenticate(fields.get("session", [""])[0])
    except ConnectSessionInvalid:
        return pages.session_error_page(from_link=True)
    if fields.get("decision", [""])[0] == "refuse":
        await service.end(active)
        return pages.error_page(
            "Nothing was connected",
            "This connect link was declined and no longer works. You can close this window.",
            status_code=200,
        )
    return _enter(active, runtime)


@page_router.get("/connect/status", response_model=AttemptStateOut)
async def attempt_status(
    request: Request, service: ServiceDep, runtime: RuntimeDep, attempt: QueryText = None
) -> Response:
    """Where one of the page's popup attempts stands. The page asks this rather than trusting
    ``popup.closed``: a provider's Cross-Origin-Opener-Policy makes a popup look closed to its
    opener while the person is still signing in."""
    if request.headers.get("sec-fetch-site") not in (None, "same-origin"):
        return error_response(
            CrossSiteRequest("Only the connect page asks for its attempts."),
            request_id_of(request.scope),
        )
    try:
        active = await _active(request, service)
        state = await service.attempt_state(active, attempt)
    except APIError as exc:
        return error_response(exc, request_id_of(request.scope))
    message = None
    if state.state in {"connected", "failed"}:
        message = pages.result_message(
            connected=state.state == "connected",
            connector=state.connector,
            catalog=runtime.catalog,
            connection_id=state.connection_id,
            error=state.error,
        )
    answer = AttemptStateOut(state=state.state, connector=state.connector, result=message)
    return JSONResponse(answer.model_dump(mode="json"), headers={"Cache-Control": "no-store"})


def _start_error(
    code: str, connector_key: str, runtime: RuntimeDep, attempt: str | None
) -> Response:
    message = pages.result_message(
        connected=False, connector=connector_key, catalog=runtime.catalog, error=code
    )
    return pages.result_page(message, status_code=400, back=attempt is None)


@page_router.get("/connect/start/{connector_key}")
async def start_connect(
    request: Request,
    service: ServiceDep,
    runtime: RuntimeDep,
    connector_key: Annotated[str, Path(min_length=1, max_length=64)],
    attempt: QueryText = None,
) -> Response:
    """Opened in the popup (or the page itself): start a browser-bound flow, go to the provider.
    ``attempt``: the popup's handle, given by the page's script (a full-page start has none)."""
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site not in {"same-origin", "none"}:
        # Another site cannot make this browser start flows for the session it holds.
        return _start_error("cross_site", connector_key, runtime, attempt)
    try:
        active = await _active(request, service)
    except ConnectSessionInvalid:
        return _start_error("session_expired", connector_key, runtime, attempt)
    entry = runtime.catalog.get(connector_key)
    if entry is not None and entry.auth_mode in CREDENTIALS_MODES:
        # No OAuth flow for it: its form, in the popup or the page that asked.
        return RedirectResponse(pages.credentials_path(entry.key), status_code=303)
    try:
        started = await service.start(active, connector_key, attempt)
    except TooManyPendingFlows:
        return _start_error("too_many", connector_key, runtime, attempt)
    except ConnectorNotAllowed:
        return _start_error("not_allowed", connector_key, runtime, attempt)
    except ConnectorNotConfigured:
        return _start_error("not_configured", connector_key, runtime, attempt)
    except APIError:  # e.g. the provider's metadata could not be fetched
        return _start_error("temporarily_unavailable", connector_key, runtime, attempt)
    response = RedirectResponse(started.authorization_url, status_code=302, headers=_NO_STORE)
    binding.set_cookie(response, runtime.settings, started.flow_id, started.binding.secret)
    return response


async def _presented_csrf(request: Request) -> str | None:
    header = request.headers.get("x-csrf-token")
    if header:
        return header
    if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        fields = parse_qs((await request.body()).decode("utf-8", "replace"))
        values = fields.get("csrf_token")
        return values[0] if values else None
    return None


@page_router.post("/connect/connections/{connection_id}/disconnect")
async def disconnect(
    request: Request,
    service: ServiceDep,
    runtime: RuntimeDep,
    connection_id: Annotated[str, Path(min_length=1, max_length=ID_MAX_LENGTH)],
) -> Response:
    """Same-origin (the Origin header must be this service's) plus the session's CSRF token:
    a cookie alone, which any site's form would carry along, is never enough."""
    try:
        active = await _active(request, service)
        if request.headers.get("origin") != origin_of(runtime.settings.base_url):
            raise CrossSiteRequest("The Origin header is missing or foreign.")
        if not csrf_matches(active.token, await _presented_csrf(request)):
            raise CrossSiteRequest("The CSRF token is missing or wrong.")
        await service.disconnect(active, connection_id)
    except APIError as exc:
        if wants_json(request):
            return error_response(exc, request_id_of(request.scope))
        if isinstance(exc, ConnectSessionInvalid):
            return pages.session_error_page(from_link=False)
        return pages.error_page("Not disconnected", exc.message, status_code=exc.status)
    if wants_json(request):
        return JSONResponse({"disconnected": True, "connection_id": connection_id})
    return RedirectResponse(f"{pages.CONNECT_PATH}?result=disconnected", status_code=303)


ConnectorKey = Annotated[str, Path(min_length=1, max_length=64)]


@page_router.get("/connect/credentials/{connector_key}")
async def credentials_form(
    request: Request, service: ServiceDep, connector_key: ConnectorKey
) -> Response:
    """The form of a connector that connects with credentials (SPEC §10)."""
    try:
        active = await _active(request, service)
    except ConnectSessionInvalid:
        return pages.session_error_page(from_link=False)
    try:
        entry = service.credentials_entry(active, connector_key)
    except ConnectorNotAllowed as exc:
        return pages.error_page("Not available", exc.message, status_code=exc.status)
    owner = await service.owner(active.record)
    return pages.credentials_form_page(entry, owner, active.csrf_token)


@page_router.post("/connect/credentials/{connector_key}")
async def submit_credentials(
    request: Request, service: ServiceDep, runtime: RuntimeDep, connector_key: ConnectorKey
) -> Response:
    """The form's submission: same-origin and the session's CSRF token (as disconnecting),
    then checked and proved exactly as ``POST /credentials``. A refusal shows the form again,
    naming what to fix; secret values are never sent back."""
    try:
        active = await _active(request, service)
    except ConnectSessionInvalid:
        return pages.session_error_page(from_link=False)
    try:
        entry = service.credentials_entry(active, connector_key)
        if request.headers.get("origin") != origin_of(runtime.settings.base_url):
            raise CrossSiteRequest("The Origin header is missing or foreign.")
        if not csrf_matches(active.token, await _presented_csrf(request)):
            raise CrossSiteRequest("The CSRF token is missing or wrong.")
    except (ConnectorNotAllowed, CrossSiteRequest) as exc:
        return pages.error_page("Not connected", exc.message, status_code=exc.status)
    form = {
        name: values[0]
        for name, values in parse_qs(
            (await request.body()).decode("utf-8", "replace"), keep_blank_values=True
        ).items()
    }
    fields = {k.removeprefix("field_"): v for k, v in form.items() if k.startswith("field_")}
    params = {k.removeprefix("param_"): v for k, v in form.items() if k.startswith("param_") and v}
    try:
        await service.connect_with_credentials(active, entry, fields, params)
    except APIError as exc:
        invalid, text = _form_problem(entry, exc)
        owner = await service.owner(active.record)
        return pages.credentials_form_page(
            entry,
            owner,
            active.csrf_token,
            error=text,
            invalid=invalid,
            given=form,
            status_code=exc.status,
        )
    query = urlencode({"result": "connected", "connector": entry.key})
    return RedirectResponse(f"{pages.CONNECT_PATH}?{query}", status_code=303)


def _form_problem(entry: ProviderEntry, exc: APIError) -> tuple[frozenset[str], str]:
    """What the form says of a refused submission: the inputs to mark, and a sentence in the
    entry's own labels (never a submitted value)."""
    if not isinstance(exc, ValidationFailed):
        return frozenset(), exc.message
    named = [str(name) for name in exc.details.get("fields", [])]
    invalid = {n.removeprefix("credentials.") for n in named if n.startswith("credentials.")}
    invalid |= {
        "param:" + n.removeprefix("integration_params.")
        for n in named
        if n.startswith("integration_params.")
    }
    labels = [field.label for field in entry.credentials if field.name in invalid]
    if not labels:
        return frozenset(invalid), "These values could not be used. Check them and try again."
    return frozenset(invalid), f"Check these and try again: {', '.join(labels)}."


@page_router.get("/connect/static/{name}")
async def static_file(name: str) -> Response:
    if name not in _STATIC:
        return Response(status_code=404)
    script = resources.files("personal_connectors").joinpath("static", name).read_text("utf-8")
    return Response(
        script,
        media_type="text/javascript",
        headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
    )
