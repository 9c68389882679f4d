"""The plain API flow in a real browser: POST /authorize → the provider's real login and consent
pages → the service's callback page → the connection exists in the API."""

from __future__ import annotations

import re
from collections.abc import Callable

import httpx
from playwright.sync_api import BrowserContext, expect

from tests.conftest import PROVIDER_KEY, Tenant, make_tenant
from tests.support.browser import (
    SQLITE_ONLY,
    Screenshots,
    off_thread,
    origin,
    sign_in_and_consent,
)
from tests.support.oidc import OidcProvider
from tests.support.service import ServiceProcess

pytestmark = SQLITE_ONLY


def test_authorization_url_in_a_browser_connects_the_account(
    api: httpx.Client,
    tenant: Tenant,
    service: ServiceProcess,
    oidc: OidcProvider,
    context: BrowserContext,
    shots: Screenshots,
) -> None:
    started = api.post(
        "/authorize",
        params=tenant.org,
        headers=tenant.headers,
        json={"connector_type": PROVIDER_KEY},
    )
    assert started.status_code == 200, started.text
    authorization_url = started.json()["authorization_url"]
    assert origin(authorization_url) == oidc.issuer

    page = context.new_page()
    page.goto(authorization_url)
    sign_in_and_consent(page, shots, login="bob")

    page.wait_for_url(re.compile(re.escape(f"{service.api}/callback") + r"\?"))
    heading = page.get_by_role("heading", level=1)
    expect(heading).to_contain_text(re.compile("connected", re.IGNORECASE))
    expect(page.get_by_text("You can close this window.")).to_be_visible()
    shots(page, "callback")

    listed = api.get("", params=tenant.org, headers=tenant.headers)
    assert listed.status_code == 200, listed.text
    [connection] = listed.json()
    assert connection["connector_type"] == PROVIDER_KEY
    assert connection["account_id"] == "bob"
    assert connection["account_email"] == "bob@example.test"
    assert connection["status"] == "active"


def test_launch_url_in_a_browser_shows_whose_account_then_connects_only_there(
    api: httpx.Client,
    service: ServiceProcess,
    oidc: OidcProvider,
    new_context: Callable[..., BrowserContext],
    shots: Screenshots,
) -> None:
    tenant = off_thread(lambda: make_tenant(service, email="launcher@example.test"))
    started = api.post(
        "/authorize",
        params=tenant.org,
        headers=tenant.headers,
        json={"connector_type": PROVIDER_KEY},
    )
    assert started.status_code == 200, started.text
    launch_url = started.json()["launch_url"]

    page = new_context().new_page()
    page.goto(launch_url)
    expect(page.locator("#launch-owner")).to_have_text("launcher@example.test")
    expect(page.locator("#launch-organization")).to_have_text("Test Org")
    shots(page, "launch-page")
    # Continue is a same-origin POST answered by a redirect to the provider (the page's CSP
    # allows that form target).
    page.get_by_role("button", name=re.compile("^Continue")).click()
    sign_in_and_consent(page, shots, login="lena")
    page.wait_for_url(re.compile(re.escape(f"{service.api}/callback") + r"\?"))
    expect(page.get_by_role("heading", level=1)).to_contain_text(
        re.compile("connected", re.IGNORECASE)
    )
    [connection] = api.get("", params=tenant.org, headers=tenant.headers).json()
    assert connection["account_id"] == "lena"
    # The link was used up by that browser: another one is told so.
    other = new_context().new_page()
    other.goto(launch_url)
    expect(other.get_by_role("heading", level=1)).to_have_text("This link has expired")
