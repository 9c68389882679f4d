"""Connecting from the connect page, end to end through the real provider, and the browser
binding that keeps a flow in the browser that started it (RFC 9700 §4.7)."""

from __future__ import annotations

from datetime import timedelta

import httpx

from personal_connectors.flows.binding import MISMATCH
from personal_connectors.models import Flow, FlowStatus, utcnow
from tests.conftest import CLIENT_ID, CLIENT_SECRET, PROVIDER_KEY, Tenant
from tests.connect_page.conftest import (
    browser,
    code_verifier,
    connect_via_page,
    connection_ids,
    connections_on,
    cookie_header,
    create_session,
    envelope_error,
    flow,
    flow_id_of,
    message_of,
    open_page,
    result_data,
    start,
)
from tests.flows.conftest import follow_callback, start_flow
from tests.flows.test_flow_security import flow_row
from tests.support.db import update_row
from tests.support.oidc import OidcProvider, login_and_consent, token_request
from tests.support.service import ServiceProcess

MISMATCH_WORDS = "opened in a different browser than the one that started it"


def test_connect_from_the_page_creates_the_sessions_users_connection(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess
) -> None:
    client = browser(service)
    open_page(client, create_session(api, tenant)["connect_url"])
    started = start(client)
    assert started.status_code == 302
    assert started.headers["location"].startswith("http://127.0.0.1:")  # the provider
    assert started.headers["cache-control"] == "no-store"
    flow_id = flow_id_of(started)
    cookie = cookie_header(started, f"pc_flow_{flow_id}=").lower()
    assert "httponly" in cookie and "samesite=lax" in cookie
    assert "path=/v1/personal-connectors/" in cookie  # sent to the callback, nowhere else
    row = flow(service, flow_id)
    assert row.binding_hash is not None and row.connect_session_id is not None
    assert row.user_id == tenant.user_id and row.organization_id == tenant.organization_id

    callback_url = login_and_consent(started.headers["location"], login="carol")
    answer = client.get(callback_url)
    assert answer.status_code == 200, answer.text
    data = result_data(answer)
    message = data["message"]
    assert message["type"] == "personal-connectors:result"
    assert message["connected"] is True and message["connector"] == PROVIDER_KEY
    assert message["message"] == "Local OIDC is connected."
    # Without an opener (popup blocked), the result page goes back to the page with the result.
    assert data["back"] == f"/connect?result=connected&connector={PROVIDER_KEY}"
    assert 'src="/connect/static/result.js"' in answer.text
    # The binding cookie is spent.
    assert f"pc_flow_{flow_id}=" in answer.headers["set-cookie"]
    assert "max-age=0" in answer.headers["set-cookie"].lower()

    assert connection_ids(api, tenant) == {message["connection_id"]}
    assert flow(service, flow_id).status == FlowStatus.COMPLETED
    back = client.get(data["back"])
    assert back.status_code == 200
    assert connections_on(back.text) == [message["connection_id"]]
    assert message_of(back.text) == ("status", "Local OIDC is connected.")


def test_a_refusal_at_the_provider_reaches_the_page(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess
) -> None:
    client = browser(service)
    open_page(client, create_session(api, tenant)["connect_url"])
    started = start(client)
    callback_url = login_and_consent(started.headers["location"], deny=True)
    answer = client.get(callback_url)
    assert answer.status_code == 400
    data = result_data(answer)
    assert data["message"]["connected"] is False
    assert data["message"]["error"] == "access_denied"
    assert data["back"] == f"/connect?result=error&error=access_denied&connector={PROVIDER_KEY}"
    assert connection_ids(api, tenant) == set()
    role, text = message_of(client.get(data["back"]).text)
    assert role == "alert" and text == "Access was not granted, so nothing was connected."


def test_a_callback_in_another_browser_is_refused_before_any_code_exchange(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess, oidc: OidcProvider
) -> None:
    client = browser(service)
    open_page(client, create_session(api, tenant)["connect_url"])
    # The attack: a flow started in browser A; its consent URL completed and the provider's
    # answer opened in browser B — with no cookie at all, or with a different one.
    attempts = [browser(service), browser(service)]
    attempts[1].cookies.set("pc_flow_placeholder", "fb_x")
    for index, other in enumerate(attempts):
        flow_id, callback_url = connect_via_page(client)
        if index == 1:
            other.cookies.clear()
            other.cookies.set(
                f"pc_flow_{flow_id}", "fb_" + "A" * 43, path="/v1/personal-connectors/"
            )
        verifier = code_verifier(service, flow_id)
        refused = other.get(callback_url)
        assert refused.status_code == 400
        assert MISMATCH_WORDS in refused.text
        assert refused.headers["content-type"].startswith("text/html")
        row = flow(service, flow_id)
        assert row.status == FlowStatus.FAILED and row.error_code == MISMATCH
        assert row.connection_id is None
        assert connection_ids(api, tenant) == set()
        # The code never reached the token endpoint: it is still redeemable at the provider.
        code = httpx.URL(callback_url).params["code"]
        exchanged = token_request(
            oidc,
            CLIENT_ID,
            CLIENT_SECRET,
            {
                "grant_type": "authorization_code",
                "code": code,
                "code_verifier": verifier,
                "redirect_uri": f"{service.api}/callback",
            },
        )
        assert exchanged.status_code == 200, exchanged.text
        # The flow is spent: the right browser cannot use it afterwards either.
        assert client.get(callback_url).status_code == 400


def test_a_json_caller_in_another_browser_gets_the_envelope(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess
) -> None:
    client = browser(service)
    open_page(client, create_session(api, tenant)["connect_url"])
    _, callback_url = connect_via_page(client)
    refused = follow_callback(callback_url)  # a bare client, no cookies
    error = envelope_error(refused, 400, "AUTHORIZATION_FAILED")
    assert error["details"]["error"] == MISMATCH


def test_api_flows_stay_unbound(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess, oidc: OidcProvider
) -> None:
    started = start_flow(api, tenant)
    # The provider's own URL, as before (local-oidc returns state); launch_url is the option.
    assert started["authorization_url"].startswith(oidc.issuer)
    assert started["launch_url"].startswith(f"{service.base_url}/v1/personal-connectors/flows/")
    row = flow_row(service, started["state"])
    assert row.binding_hash is None and row.connect_session_id is None
    callback_url = login_and_consent(started["authorization_url"])
    # Any browser may follow it, as before: no binding, no cookie needed.
    response = follow_callback(callback_url)
    assert response.status_code == 200, response.text
    assert connection_ids(api, tenant) == {response.json()["data"]["connection_id"]}


def test_starting_needs_the_session_and_an_offered_configured_connector(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess
) -> None:
    client = browser(service)
    created = create_session(api, tenant, allowed_connectors=[PROVIDER_KEY, "github"])
    open_page(client, created["connect_url"])
    cases = [
        (client, "faulty-oidc", {}, "not_allowed"),
        (client, "github", {}, "not_configured"),
        (client, PROVIDER_KEY, {"Sec-Fetch-Site": "cross-site"}, "cross_site"),
        (browser(service), PROVIDER_KEY, {}, "session_expired"),
    ]
    for who, key, headers, code in cases:
        response = who.get(f"/connect/start/{key}", headers=headers)
        assert response.status_code == 400, (key, code)
        message = result_data(response)["message"]
        assert (message["connected"], message["error"]) == (False, code)
        assert "set-cookie" not in response.headers
    # A navigation the user typed (Sec-Fetch-Site: none) or an old browser's (no header) is fine.
    for headers in ({"Sec-Fetch-Site": "none"}, {}):
        assert client.get(f"/connect/start/{PROVIDER_KEY}", headers=headers).status_code == 302


def test_an_expired_flow_tells_the_page(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess
) -> None:
    client = browser(service)
    open_page(client, create_session(api, tenant)["connect_url"])
    flow_id, callback_url = connect_via_page(client)
    update_row(service, Flow, flow_id, expires_at=utcnow() - timedelta(seconds=1))
    late = client.get(callback_url)
    assert late.status_code == 400
    data = result_data(late)
    # Posted to the page if it opened this popup; no redirect (it might be an API flow).
    assert data["message"]["error"] == "expired" and data["back"] is None
    assert connection_ids(api, tenant) == set()
