"""A provider that drops `state` on its redirect back (ClickUp): every flow is bound to the
browser that opens it, and the callback finds the flow by that browser's cookie — never by a
guess such as "the latest flow of this provider"."""

from __future__ import annotations

import httpx

from personal_connectors.flows.binding import LAUNCH_PATH
from personal_connectors.flows.exceptions import MISMATCH
from personal_connectors.models import FlowStatus
from tests.conftest import STATELESS_KEY, Tenant
from tests.connect_page.conftest import (
    browser,
    connect_via_page,
    connection_ids,
    cookie_header,
    create_session,
    flow,
    flow_id_of,
    launch,
    open_page,
    result_data,
    strip_query,
)
from tests.flows.conftest import start_flow
from tests.support.oidc import OidcProvider, login_and_consent
from tests.support.service import ServiceProcess


def _launch(api: httpx.Client, tenant: Tenant) -> dict[str, object]:
    started = start_flow(api, tenant, connector_type=STATELESS_KEY)
    return started


def test_the_api_hands_out_a_one_time_launch_url_that_binds_the_browser(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess, oidc: OidcProvider
) -> None:
    started = _launch(api, tenant)
    url = str(started["authorization_url"])
    assert url.startswith(f"{service.base_url}{LAUNCH_PATH}?t=lt_")
    client = browser(service)
    launched = launch(client, url)
    assert launched.status_code == 303
    provider_url = launched.headers["location"]
    assert provider_url.startswith(oidc.metadata["authorization_endpoint"])
    flow_id = flow_id_of(launched)
    assert "httponly" in cookie_header(launched, f"pc_flow_{flow_id}=").lower()
    assert flow(service, flow_id).binding_hash is not None
    # Once only: a second browser (or a replay) gets nothing.
    again = launch(browser(service), url)
    assert again.status_code == 400 and "This link has expired" in again.text
    assert "set-cookie" not in again.headers

    # The provider answers without `state`; the browser's cookie finds the flow.
    callback_url = strip_query(login_and_consent(provider_url), "state")
    assert "state=" not in callback_url
    answer = client.get(callback_url, headers={"Accept": "application/json"})
    assert answer.status_code == 200, answer.text
    connection_id = answer.json()["data"]["connection_id"]
    assert connection_ids(api, tenant) == {connection_id}
    # complete-oauth answers for it by the state the API caller holds.
    completed = api.post(
        "/complete-oauth",
        params=tenant.org,
        headers=tenant.headers,
        json={"state_token": started["state"]},
    )
    assert completed.json()["connected"] is True
    assert completed.json()["connection"]["id"] == connection_id


def test_without_the_cookie_the_stateless_callback_is_refused(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess
) -> None:
    started = _launch(api, tenant)
    client = browser(service)
    launched = launch(client, str(started["authorization_url"]))
    flow_id = flow_id_of(launched)
    callback_url = strip_query(login_and_consent(launched.headers["location"]), "state")
    # Another browser, and the same one with a forged secret: nothing is found, nothing done.
    forged = browser(service)
    forged.cookies.set(f"pc_flow_{flow_id}", "fb_" + "B" * 43, path="/v1/personal-connectors/")
    for other in (browser(service), forged):
        refused = other.get(callback_url)
        assert refused.status_code == 400
        assert "could not be matched to one started in this browser" in refused.text
        assert flow(service, flow_id).status == FlowStatus.PENDING
    assert connection_ids(api, tenant) == set()
    # Had the provider kept `state`, a foreign browser would still be refused (bound flow).
    with_state_elsewhere = browser(service).get(
        login_and_consent(
            launch(browser(service), str(_launch(api, tenant)["authorization_url"])).headers[
                "location"
            ]
        )
    )
    assert with_state_elsewhere.status_code == 400
    assert "different browser" in with_state_elsewhere.text
    # The right browser still completes its own flow.
    assert client.get(callback_url, headers={"Accept": "application/json"}).status_code == 200
    assert len(connection_ids(api, tenant)) == 1


def test_two_stateless_flows_in_one_browser_are_not_guessed_between(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess
) -> None:
    client = browser(service)
    first = launch(client, str(_launch(api, tenant)["authorization_url"]))
    second = launch(client, str(_launch(api, tenant)["authorization_url"]))
    callback_url = strip_query(login_and_consent(first.headers["location"]), "state")
    # Which flow did the provider answer? Without state nobody can tell: refuse, change nothing.
    assert client.get(callback_url).status_code == 400
    for launched in (first, second):
        assert flow(service, flow_id_of(launched)).status == FlowStatus.PENDING
    assert connection_ids(api, tenant) == set()


def test_the_connect_page_binds_stateless_flows_directly(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess, oidc: OidcProvider
) -> None:
    client = browser(service)
    open_page(client, create_session(api, tenant)["connect_url"])
    flow_id, callback_url = connect_via_page(client, STATELESS_KEY)
    stateless = strip_query(callback_url, "state")
    refused = browser(service).get(stateless)
    assert refused.status_code == 400
    answer = client.get(stateless)
    assert answer.status_code == 200, answer.text
    message = result_data(answer)["message"]
    assert message["connected"] is True and message["connector"] == STATELESS_KEY
    assert connection_ids(api, tenant) == {message["connection_id"]}
    assert flow(service, flow_id).error_code != MISMATCH
