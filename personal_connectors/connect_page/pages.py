"""The connect page's HTML answers: the page itself, its error pages, and the result page that
tells the page (in the popup's opener, or after a full-page round trip) how a connect ended.

User-facing wording lives here, once, for both the popup message and the ``?result=`` fallback.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from fastapi.responses import HTMLResponse

from personal_connectors.config import Settings, origin_of
from personal_connectors.flows import binding
from personal_connectors.flows.exceptions import (
    MISMATCH,
    MISMATCH_TEXT,
    SAFE_ERROR_CODE,
    failure_text,
)
from personal_connectors.http.pages import render_page
from personal_connectors.providers.catalog import Catalog
from personal_connectors.providers.schema import ProviderEntry

if TYPE_CHECKING:
    from personal_connectors.flows.service import CallbackOutcome
    from personal_connectors.runtime import Runtime


@dataclass(frozen=True)
class Owner:
    """Whose session it is, as the page and its interstitial say it."""

    email: str
    name: str | None
    organization: str

    @property
    def label(self) -> str:
        return f"{self.name} ({self.email})" if self.name else self.email


RESULT_TYPE = "personal-connectors:result"
CONNECT_PATH = "/connect"
SCRIPT_PATH = f"{CONNECT_PATH}/static/connect.js"
RESULT_SCRIPT_PATH = f"{CONNECT_PATH}/static/result.js"


ERROR_TEXTS = {
    "access_denied": "Access was not granted, so nothing was connected.",
    MISMATCH: MISMATCH_TEXT,
    "expired": "The sign-in took too long or was already used. Please try again.",
    "unmatched": "This sign-in could not be matched to one started in this browser, so nothing "
    "was connected. Start again from the app, in the same browser.",
    "session_expired": "This connect link has expired. Ask the app for a new one.",
    "not_configured": "This service is not set up for your organization yet.",
    "not_allowed": "This link does not offer that service.",
    "cross_site": "The connection was not started from this page, so it was refused.",
    "temporarily_unavailable": "The service could not be reached. Please try again shortly.",
    "too_many": "Too many sign-ins are waiting to be finished. Finish one, or wait a few "
    "minutes, then try again.",
}


def error_text(code: str) -> str:
    """A fixed sentence per code: never text that came with the request or from the provider."""
    return ERROR_TEXTS.get(code) or failure_text(code)


def success_text(connector_name: str | None) -> str:
    return f"{connector_name or 'Your account'} is connected."


def safe_code(code: str | None) -> str:
    return code if code and SAFE_ERROR_CODE.match(code) else "server_error"


def result_message(
    *,
    connected: bool,
    connector: str | None,
    catalog: Catalog,
    connection_id: str | None = None,
    error: str | None = None,
) -> dict[str, Any]:
    """What the page receives by postMessage: type, connected, connection_id?, error?, plus the
    connector key and the sentence to show."""
    entry = catalog.get(connector) if connector else None
    name = entry.display_name if entry else None
    message: dict[str, Any] = {"type": RESULT_TYPE, "connected": connected, "connector": connector}
    if connection_id:
        message["connection_id"] = connection_id
    if connected:
        message["message"] = success_text(name)
    else:
        code = safe_code(error)
        message["error"] = code
        message["message"] = error_text(code)
    return message


def back_url(message: dict[str, Any]) -> str:
    """Where a result page without an opener sends the browser: the page, showing the result."""
    query = {"result": "connected" if message["connected"] else "error"}
    if message.get("error"):
        query["error"] = str(message["error"])
    if message.get("connector"):
        query["connector"] = str(message["connector"])
    return f"{CONNECT_PATH}?{urlencode(query)}"


def result_page(message: dict[str, Any], *, status_code: int, back: bool = True) -> HTMLResponse:
    """Hands ``message`` to the connect page and closes when it is a popup; a full-page round
    trip (``back``) returns to the connect page, which shows it."""
    title = "Account connected" if message["connected"] else "Not connected"
    data = {"message": message, "back": back_url(message) if back else None}
    return render_page(
        "connect_result.html",
        status_code=status_code,
        title=title,
        text=message["message"],
        connected=message["connected"],
        data=data,
        script=RESULT_SCRIPT_PATH,
        back=data["back"],
    )


def open_up_for_page(response: HTMLResponse) -> None:
    """The connect page's own fetches (list refresh, disconnect) need ``connect-src 'self'``;
    and its POSTs must carry an ``Origin`` header, which a ``no-referrer`` policy would turn
    into ``Origin: null`` — ``same-origin`` still sends no referrer to any other site."""
    response.headers["Content-Security-Policy"] += "; connect-src 'self'"
    response.headers["Referrer-Policy"] = "same-origin"


def error_page(title: str, text: str, *, status_code: int) -> HTMLResponse:
    return render_page(
        "connect_error.html", status_code=status_code, title=title, text=text, script=None
    )


def session_error_page(*, from_link: bool) -> HTMLResponse:
    if from_link:
        return error_page(
            "This link has expired",
            "This connect link is unknown or has expired. Links work for a limited time: "
            "go back to the app and open the connect page again.",
            status_code=400,
        )
    return error_page(
        "Your session has ended",
        "The connect page needs a fresh link from the app. Go back to the app and open the "
        "connect page again.",
        status_code=401,
    )


def app_origins(settings: Settings, return_url: str | None) -> list[str]:
    """Where the page may relay results to its own opener (the app that opened the page)."""
    if return_url:
        return [origin_of(return_url)]
    return sorted(settings.return_origins)


def notice(
    result: str | None, error: str | None, connector: str | None, catalog: Catalog
) -> dict[str, Any] | None:
    """The message a full-page round trip (``/connect?result=…``) shows, or None."""
    if result not in {"connected", "error", "disconnected"}:
        return None
    entry = catalog.get(connector) if connector and len(connector) <= 64 else None
    if result == "disconnected":
        return {"error": False, "text": "The account was disconnected.", "message": None}
    message = result_message(
        connected=result == "connected",
        connector=entry.key if entry else None,
        catalog=catalog,
        error=error,
    )
    return {"error": not message["connected"], "text": message["message"], "message": message}


# --- the callback's answers for connect-page flows (connect_page/callback.py) -------------------


def flow_result_page(outcome: CallbackOutcome, runtime: Runtime) -> HTMLResponse:
    """The callback of a flow started from the connect page: result to the page, cookie gone."""
    flow = outcome.flow
    error = outcome.error.code if outcome.error is not None else None
    if error is None and not outcome.connected:
        error = "server_error"  # connect-page flows complete at the callback; never "pending"
    message = result_message(
        connected=outcome.connected,
        connector=flow.app_key,
        catalog=runtime.catalog,
        connection_id=outcome.connection_id,
        error=error,
    )
    if flow.connect_attempt is not None:
        # The page that opened this popup knows its attempt by this handle; another tab's page
        # hearing the result on the shared channel ignores it.
        message["attempt"] = flow.connect_attempt
    # A popup attempt (the page gave it a handle) never turns into a second connect page.
    response = result_page(
        message,
        status_code=200 if outcome.connected else 400,
        back=flow.connect_attempt is None,
    )
    binding.clear_cookie(response, runtime.settings, flow.id)
    return response


def expired_page(catalog: Catalog, *, unmatched: bool = False) -> HTMLResponse:
    """An unknown, expired or used flow in a browser that holds flow cookies (probably the
    connect page's popup, whose page should hear it), or a state-less answer matching no flow
    of this browser (``unmatched``). No redirect: it may be an API flow."""
    code = "unmatched" if unmatched else "expired"
    message = result_message(connected=False, connector=None, catalog=catalog, error=code)
    return result_page(message, status_code=400, back=False)


def session_confirm_page(owner: Owner, session_token: str) -> HTMLResponse:
    """The interstitial of a connect link opened from elsewhere: whose session, and a click."""
    page = render_page(
        "connect_confirm.html",
        title="Manage connected accounts",
        owner=owner,
        session_token=session_token,
        action=f"{CONNECT_PATH}/session",
    )
    page.headers["Referrer-Policy"] = "same-origin"  # the POST must carry our Origin
    return page


def credentials_path(connector_key: str) -> str:
    return f"{CONNECT_PATH}/credentials/{connector_key}"


def credentials_form_page(
    entry: ProviderEntry,
    owner: Owner,
    csrf_token: str,
    *,
    error: str | None = None,
    invalid: frozenset[str] = frozenset(),
    given: dict[str, str] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    """The form of a credentials connector (SPEC §10): a labelled input per field, secret ones
    masked and never filled in again, the entry's help links, the member's integration params.
    ``invalid``: the names (fields and params) the last submission got wrong; ``given``: what it
    sent, of which only the non-secret values are shown again."""
    given = given or {}
    fields = [
        {
            "name": field.name,
            "label": field.label,
            "secret": field.secret,
            "help_url": field.help_url,
            "invalid": field.name in invalid,
            "value": "" if field.secret else given.get(f"field_{field.name}", ""),
        }
        for field in entry.credentials
    ]
    params = [
        {
            "name": name,
            "label": spec.description or name,
            "required": spec.required and spec.default is None,
            "invalid": f"param:{name}" in invalid,
            "value": given.get(f"param_{name}", spec.default or ""),
        }
        for name, spec in entry.integration_params.items()
        if name not in entry.admin_params
    ]
    page = render_page(
        "connect_credentials.html",
        status_code=status_code,
        name=entry.display_name,
        owner=owner,
        csrf_token=csrf_token,
        error=error,
        fields=fields,
        params=params,
        action=credentials_path(entry.key),
        back=CONNECT_PATH,
        script=None,
    )
    page.headers["Referrer-Policy"] = "same-origin"  # the POST must carry our Origin
    return page


def mismatch_page() -> HTMLResponse:
    return error_page("Sign-in refused", MISMATCH_TEXT, status_code=400)
