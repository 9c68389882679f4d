"""A callback whose code exchange fails — the provider answers an error, or drops the connection
mid-exchange — ends the flow failed: a clear result page, complete-oauth reporting the failure
(never "not yet" forever), the state spent, nothing connected, and a new attempt that works."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
import pytest

from tests.conftest import FAULTY_KEY, PROVIDER_KEY, Tenant
from tests.flows.conftest import StartedFlow, authorize_and_consent, follow_callback
from tests.support.fault_proxy import FaultProxy
from tests.support.service import ServiceProcess

TOKEN_PATH = "/token"
RESULT = re.compile(r'<script type="application/json" id="result">(.*?)</script>', re.S)


@pytest.fixture
def proxy(fault_proxy: FaultProxy) -> Iterator[FaultProxy]:
    fault_proxy.set_mode("pass")
    yield fault_proxy
    fault_proxy.set_mode("pass")


def with_code(callback_url: str, code: str) -> str:
    parts = urlsplit(callback_url)
    query = dict(parse_qsl(parts.query))
    query["code"] = code
    return urlunsplit(parts._replace(query=urlencode(query)))


def assert_ended_failed(
    api: httpx.Client, tenant: Tenant, flow: StartedFlow, page: httpx.Response
) -> str:
    """The browser's page says it failed; complete-oauth says so too; the state is spent."""
    assert page.status_code == 400, page.text
    assert page.headers["content-type"].startswith("text/html")
    assert '<h1 class="fail">' in page.text
    match = RESULT.search(page.text)
    assert match is not None
    result = json.loads(match.group(1))
    assert result["connected"] is False and result["connection_id"] is None
    completed = api.post(
        "/complete-oauth",
        params=tenant.org,
        headers=tenant.headers,
        json={"state_token": flow.state},
    ).json()
    assert completed["connected"] is False and completed["connection"] is None
    assert completed["error"]["code"] == result["error"]
    again = follow_callback(flow.callback_url)  # the same redirect once more: single use
    assert again.status_code == 400
    assert again.json()["error"]["system_message"] == "Invalid or expired state token."
    listed = api.get("", params=tenant.org, headers=tenant.headers).json()
    assert listed == []
    return str(result["error"])


def assert_a_new_attempt_connects(api: httpx.Client, tenant: Tenant, connector_type: str) -> None:
    flow = authorize_and_consent(api, tenant, connector_type=connector_type)
    response = follow_callback(flow.callback_url)
    assert response.status_code == 200, response.text
    completed = api.post(
        "/complete-oauth",
        params=tenant.org,
        headers=tenant.headers,
        json={"state_token": flow.state},
    ).json()
    assert completed["connected"] is True


def test_a_code_the_provider_refuses_ends_the_flow_failed(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess
) -> None:
    flow = authorize_and_consent(api, tenant, login=f"u-{os.urandom(4).hex()}")
    tampered = StartedFlow(flow.authorize, with_code(flow.callback_url, "not-the-code"))
    page = follow_callback(tampered.callback_url, accept="text/html")
    assert assert_ended_failed(api, tenant, tampered, page) == "invalid_grant"
    assert_a_new_attempt_connects(api, tenant, PROVIDER_KEY)


@pytest.mark.parametrize("fault", ["drop", "status:500", "garbage"])
def test_an_exchange_that_breaks_midway_ends_the_flow_failed(
    api: httpx.Client, tenant: Tenant, proxy: FaultProxy, fault: str
) -> None:
    flow = authorize_and_consent(
        api, tenant, login=f"u-{os.urandom(4).hex()}", connector_type=FAULTY_KEY
    )
    before = proxy.count(TOKEN_PATH)
    proxy.set_mode(fault)
    page = follow_callback(flow.callback_url, accept="text/html")
    assert proxy.count(TOKEN_PATH) > before  # the exchange was under way when it broke
    error = assert_ended_failed(api, tenant, flow, page)
    assert error in {"temporarily_unavailable", "provider_error"}
    proxy.set_mode("pass")
    assert_a_new_attempt_connects(api, tenant, FAULTY_KEY)


def test_a_failed_exchange_answers_a_json_caller_in_the_envelope(
    api: httpx.Client, tenant: Tenant, proxy: FaultProxy, service: ServiceProcess
) -> None:
    flow = authorize_and_consent(api, tenant, connector_type=FAULTY_KEY)
    offset = len(service.logs())
    proxy.set_mode("drop")
    response = follow_callback(flow.callback_url)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "AUTHORIZATION_FAILED"
    assert error["details"]["error"] == "temporarily_unavailable"
    assert flow.query["code"] not in response.text
    # The operator's log says what broke; the caller's answer only that it may be tried again.
    logged = service.logs()[offset:]
    assert "the token or identity call failed (provider unreachable: " in logged
    assert flow.query["code"] not in logged
