"""``/connect/status``: the connect page asks the server where its popup attempt stands,
instead of reading failure into ``popup.closed`` (which a provider's COOP sets while the person
is still signing in). A popup attempt's result page never leads to a second connect page."""

from __future__ import annotations

import httpx

from tests.conftest import PROVIDER_KEY, Tenant
from tests.connect_page.conftest import (
    browser,
    create_session,
    envelope_error,
    flow_id_of,
    open_page,
    result_data,
)
from tests.support.oidc import login_and_consent
from tests.support.service import ServiceProcess

ATTEMPT = "a1b2c3d4e5f6a7b8c9d0"


def _status(client: httpx.Client, attempt: str = ATTEMPT) -> httpx.Response:
    return client.get(
        "/connect/status",
        params={"attempt": attempt},
        headers={"Accept": "application/json", "Sec-Fetch-Site": "same-origin"},
    )


def _start(client: httpx.Client, attempt: str = ATTEMPT, deny: bool = False) -> str:
    started = client.get(
        f"/connect/start/{PROVIDER_KEY}",
        params={"attempt": attempt},
        headers={"Sec-Fetch-Site": "same-origin"},
    )
    assert started.status_code == 302, started.text
    flow_id_of(started)
    return login_and_consent(started.headers["location"], login="erin", deny=deny)


def test_an_attempt_is_starting_then_pending_then_connected(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess
) -> None:
    client = browser(service)
    open_page(client, create_session(api, tenant)["connect_url"])
    assert _status(client).json() == {"state": "starting", "connector": None, "result": None}
    callback_url = _start(client)
    pending = _status(client)
    assert pending.status_code == 200 and pending.headers["cache-control"] == "no-store"
    assert pending.json() == {"state": "pending", "connector": PROVIDER_KEY, "result": None}
    page = client.get(callback_url)
    assert page.status_code == 200
    data = result_data(page)
    # A popup attempt: the result page closes the popup, it never goes "back" to /connect.
    assert data["back"] is None
    assert 'href="/connect' not in page.text and "You can close this window" in page.text
    done = _status(client).json()
    assert done["state"] == "connected"
    # The popup's message names its attempt (another tab hearing it on the shared channel
    # ignores it); the status answer is that page's own, so it needs no name.
    message = dict(data["message"])
    assert message.pop("attempt") == ATTEMPT
    assert done["result"] == message
    assert done["result"]["connection_id"].startswith("conn_")


def test_a_refused_attempt_is_failed_with_a_fixed_sentence(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess
) -> None:
    client = browser(service)
    open_page(client, create_session(api, tenant)["connect_url"])
    client.get(_start(client, deny=True))
    failed = _status(client).json()
    assert failed["state"] == "failed" and failed["result"]["error"] == "access_denied"
    assert failed["result"]["message"] == "Access was not granted, so nothing was connected."


def test_a_full_page_attempt_still_goes_back_to_the_page(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess
) -> None:
    client = browser(service)
    open_page(client, create_session(api, tenant)["connect_url"])
    started = client.get(
        f"/connect/start/{PROVIDER_KEY}", headers={"Sec-Fetch-Site": "same-origin"}
    )
    page = client.get(login_and_consent(started.headers["location"]))
    assert result_data(page)["back"].startswith("/connect?result=connected")


def test_status_is_the_sessions_own_and_same_origin(
    api: httpx.Client, tenant: Tenant, other_tenant: Tenant, service: ServiceProcess
) -> None:
    mine = browser(service)
    open_page(mine, create_session(api, tenant)["connect_url"])
    _start(mine)
    theirs = browser(service)
    open_page(theirs, create_session(api, other_tenant)["connect_url"])
    # Another session asking for the same attempt id learns nothing.
    assert _status(theirs).json()["state"] == "starting"
    envelope_error(_status(browser(service)), 401, "CONNECT_SESSION_INVALID")
    envelope_error(_status(mine, attempt="bad"), 400, "VALIDATION_ERROR")
    cross = mine.get(
        "/connect/status", params={"attempt": ATTEMPT}, headers={"Sec-Fetch-Site": "cross-site"}
    )
    envelope_error(cross, 403, "CSRF_CHECK_FAILED")
