"""Account attachment by link made hard: every API flow has a one-time launch URL that shows
whose account the connection will join and binds the flow to the browser that continues; an
organization can refuse every flow not launched that way."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import httpx
from sqlalchemy import select

from personal_connectors.crypto.hashing import digest
from personal_connectors.flows.exceptions import LAUNCH_REFUSED, MISMATCH, NOT_LAUNCHED
from personal_connectors.flows.state import state_hash
from personal_connectors.models import Flow, FlowStatus, Role
from tests.conftest import Tenant, make_tenant
from tests.connect_page.conftest import browser, envelope_error, flow, flow_id_of, launch
from tests.flows.conftest import follow_callback, start_flow
from tests.support.oidc import OidcProvider, login_and_consent
from tests.support.service import ServiceProcess


def _flow_id(service: ServiceProcess, launch_url: str) -> str:
    token = parse_qs(urlsplit(launch_url).query)["t"][0]

    async def work(session, runtime):  # type: ignore[no-untyped-def]
        statement = select(Flow.id).where(Flow.launch_hash == digest(token))
        return (await session.execute(statement)).scalar_one()

    found: str = service.run_db(work)
    return found


def _complete(api: httpx.Client, tenant: Tenant, state: str, **body: str) -> httpx.Response:
    return api.post(
        "/complete-oauth",
        params=tenant.org,
        headers=tenant.headers,
        json={"state_token": state, **body},
    )


def test_authorize_answers_a_launch_url_that_says_whose_account_before_anything_changes(
    api: httpx.Client, service: ServiceProcess, oidc: OidcProvider
) -> None:
    tenant = make_tenant(service, email="launch-owner@example.test")
    started = start_flow(api, tenant)
    # SPEC §3.1's shape is kept: the provider's own URL, and next to it the launch URL.
    assert started["authorization_url"].startswith(oidc.metadata["authorization_endpoint"])
    assert started["launch_url"].startswith(f"{service.api}/flows/launch?t=lt_")
    flow_id = _flow_id(service, started["launch_url"])

    client = browser(service)
    for _ in range(2):  # a link preview or a mail scanner opening it uses nothing up
        page = client.get(started["launch_url"])
        assert page.status_code == 200, page.text
        assert "launch-owner@example.test" in page.text
        assert "Test Org" in page.text and "Local OIDC" in page.text
        assert "set-cookie" not in page.headers
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert flow(service, flow_id).binding_hash is None

    continued = launch(client, started["launch_url"])
    assert continued.status_code == 303
    assert continued.headers["location"] == started["authorization_url"]
    assert flow_id_of(continued) == flow_id
    assert flow(service, flow_id).binding_hash is not None
    # One browser only: the link is spent.
    again = launch(browser(service), started["launch_url"])
    assert again.status_code == 400 and "This link has expired" in again.text


def test_a_launched_flow_is_refused_in_any_other_browser(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess
) -> None:
    started = start_flow(api, tenant)
    victim = browser(service)
    continued = launch(victim, started["launch_url"])
    callback_url = login_and_consent(continued.headers["location"], login="victim")
    # The attacker (who made the link) follows the callback in their own browser: refused
    # before any code exchange, nothing connected.
    refused = follow_callback(callback_url)
    assert envelope_error(refused, 400, "AUTHORIZATION_FAILED")["details"]["error"] == MISMATCH
    assert _complete(api, tenant, started["state"]).json()["error"]["code"] == MISMATCH
    assert api.get("", params=tenant.org, headers=tenant.headers).json() == []


def test_the_browser_that_launched_completes_the_flow(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess
) -> None:
    started = start_flow(api, tenant)
    client = browser(service)
    continued = launch(client, started["launch_url"])
    answer = client.get(
        login_and_consent(continued.headers["location"], login="carol"),
        headers={"Accept": "application/json"},
    )
    assert answer.status_code == 200, answer.text
    assert _complete(api, tenant, started["state"]).json()["connected"] is True


def test_only_a_click_on_the_launch_page_launches(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess
) -> None:
    started = start_flow(api, tenant)
    token = parse_qs(urlsplit(started["launch_url"]).query)["t"][0]
    path = urlsplit(started["launch_url"]).path
    # Another site's auto-submitted form (foreign Origin), or no Origin at all.
    for headers in (
        {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
        {},
        {"Origin": service.base_url, "Sec-Fetch-Site": "cross-site"},
    ):
        client = browser(service)
        refused = client.post(path, data={"t": token, "decision": "continue"}, headers=headers)
        assert refused.status_code == 403, headers
        assert "set-cookie" not in refused.headers
    # Still launchable by the person it was meant for.
    assert launch(browser(service), started["launch_url"]).status_code == 303


def test_this_is_not_me_ends_the_flow(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess
) -> None:
    started = start_flow(api, tenant)
    declined = launch(browser(service), started["launch_url"], decision="refuse")
    assert declined.status_code == 200 and "Nothing was connected" in declined.text
    completed = _complete(api, tenant, started["state"]).json()
    assert completed["connected"] is False and completed["error"]["code"] == LAUNCH_REFUSED
    assert launch(browser(service), started["launch_url"]).status_code == 400


def test_the_organization_setting_refuses_flows_never_launched(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess
) -> None:
    shown = api.get("/organization", params=tenant.org, headers=tenant.headers)
    assert shown.status_code == 200, shown.text
    assert shown.json()["require_launched_flows"] is False  # off by default
    assert shown.json()["id"] == tenant.organization_id

    member = make_tenant(service, role=Role.MEMBER)
    # A member of another organization, and a plain member of this one, cannot change it.
    envelope_error(
        api.patch(
            "/organization",
            params=tenant.org,
            headers=member.headers,
            json={"require_launched_flows": True},
        ),
        403,
        "ORGANIZATION_ACCESS_DENIED",
    )
    envelope_error(
        api.patch(
            "/organization",
            params=member.org,
            headers=member.headers,
            json={"require_launched_flows": True},
        ),
        403,
        "INSUFFICIENT_PERMISSIONS",
    )
    envelope_error(
        api.patch(
            "/organization",
            params=tenant.org,
            headers=tenant.headers,
            json={"require_launched_flows": "yes please"},
        ),
        400,
        "VALIDATION_ERROR",
    )
    changed = api.patch(
        "/organization",
        params=tenant.org,
        headers=tenant.headers,
        json={"require_launched_flows": True},
    )
    assert changed.status_code == 200 and changed.json()["require_launched_flows"] is True

    # The bare authorization_url: the callback refuses it, whoever's browser it is.
    bare = start_flow(api, tenant)
    callback_url = login_and_consent(bare["authorization_url"])
    refused = follow_callback(callback_url)
    assert envelope_error(refused, 400, "AUTHORIZATION_FAILED")["details"]["error"] == NOT_LAUNCHED
    assert _complete(api, tenant, bare["state"]).json()["error"]["code"] == NOT_LAUNCHED
    assert api.get("", params=tenant.org, headers=tenant.headers).json() == []

    # The launched one connects.
    launched = start_flow(api, tenant)
    client = browser(service)
    continued = launch(client, launched["launch_url"])
    answer = client.get(
        login_and_consent(continued.headers["location"]), headers={"Accept": "application/json"}
    )
    assert answer.status_code == 200, answer.text
    assert flow(service, _flow_id_by_state(service, launched["state"])).status == (
        FlowStatus.COMPLETED
    )


def _flow_id_by_state(service: ServiceProcess, state: str) -> str:
    async def work(session, runtime):  # type: ignore[no-untyped-def]
        statement = select(Flow.id).where(Flow.state_hash == state_hash(state))
        return (await session.execute(statement)).scalar_one()

    found: str = service.run_db(work)
    return found
