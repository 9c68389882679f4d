"""The plain API flow in a real browser: POST /authorize → the provider's real login and consent
pages → the service's callback page → the connection exists in the API."""

from __future__ import annotations

import re

import httpx
from playwright.sync_api import BrowserContext, expect

from tests.conftest import PROVIDER_KEY, Tenant
from tests.support.browser import SQLITE_ONLY, Screenshots, origin, sign_in_and_consent
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
