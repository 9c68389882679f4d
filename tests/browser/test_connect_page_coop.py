"""The connect page with a provider whose pages send ``Cross-Origin-Opener-Policy: same-origin``
(Django's default): the popup is cut off from the page while the person signs in.

The test provider sends the header to a browser that holds its ``pc_test_coop`` cookie
(tests/support/oidc_provider/server.mjs), so only this test's browser context sees it. The page must keep waiting while the flow is pending — it sees its popup
"closed" the moment COOP swaps it — and the popup must end closed (or saying it can be closed),
never as a second copy of the connect page.
"""

from __future__ import annotations

import re

import httpx
import pytest
from playwright.sync_api import BrowserContext, expect

from tests.conftest import PROVIDER_KEY, Tenant
from tests.support.browser import (
    SQLITE_ONLY,
    Screenshots,
    connection_ids,
    create_connect_session,
    open_connect_page,
    sign_in_and_consent,
)
from tests.support.oidc import OidcProvider
from tests.support.service import ServiceProcess

pytestmark = SQLITE_ONLY

COOP = "same-origin"


@pytest.mark.parametrize("broadcast", [True, False], ids=["with-channel", "polling-only"])
def test_a_provider_with_coop_neither_fails_the_page_early_nor_leaves_a_second_page(
    broadcast: bool,
    api: httpx.Client,
    tenant: Tenant,
    service: ServiceProcess,
    oidc: OidcProvider,
    context: BrowserContext,
    shots: Screenshots,
) -> None:
    context.add_cookies([{"name": "pc_test_coop", "value": COOP, "url": oidc.issuer}])
    if not broadcast:
        # A browser where the popup cannot reach the page at all (no BroadcastChannel, as when
        # the page is partitioned apart): the page's status poll alone must tell the result.
        context.add_init_script("delete window.BroadcastChannel;")
    page = open_connect_page(
        context, create_connect_session(api, tenant.headers, tenant.org), service.base_url
    )
    with page.expect_popup() as popup_info:
        page.locator(f'[data-connector="{PROVIDER_KEY}"]').get_by_role(
            "button", name=re.compile(r"^Connect\b")
        ).click()
    popup = popup_info.value
    expect(popup.locator("input[name=login]")).to_be_visible()
    # The provider's page really is cut off from the connect page (what COOP does).
    assert popup.evaluate("window.opener") is None
    message = page.locator("#connect-message")
    # The page sees its popup "closed" but the flow is pending: it waits, it does not fail.
    expect(message).to_contain_text("Waiting for the sign-in")
    expect(message).not_to_contain_text("closed before")
    shots(page, "waiting-while-cut-off")

    # Listen before signing in: the result page closes the popup as soon as it has spoken.
    with popup.expect_event("close"):
        sign_in_and_consent(popup, shots, login="dora", prefix="coop-popup")
    # The result reaches the page although the popup had no opener any more.
    connection = page.locator("[data-connection-id]")
    expect(connection).to_have_count(1)
    expect(message).to_have_attribute("role", "status")
    expect(message).to_contain_text("is connected")
    shots(page, "connected")
    [listed] = api.get("", params=tenant.org, headers=tenant.headers).json()
    assert listed["account_id"] == "dora"
    assert connection_ids(api, tenant.headers, tenant.org) == {
        connection.get_attribute("data-connection-id")
    }
