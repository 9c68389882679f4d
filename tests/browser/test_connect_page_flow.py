"""The hosted connect page in a real browser: connect in a popup, disconnect with confirmation,
the full-page fallback when popups are blocked, and a flow finished in another browser."""

from __future__ import annotations

import re
from collections.abc import Callable

import httpx
import pytest
from playwright.sync_api import BrowserContext, Cookie, Locator, Page, Request, expect

from personal_connectors.flows import binding
from personal_connectors.models.connection import ConnectionStatus
from tests.conftest import PROVIDER_KEY, Tenant
from tests.support.browser import (
    SQLITE_ONLY,
    Screenshots,
    connect_without_browser,
    connection_ids,
    create_connect_session,
    off_thread,
    open_connect_page,
    origin,
    sign_in_and_consent,
)
from tests.support.db import update_connection
from tests.support.oidc import OidcProvider
from tests.support.service import ServiceProcess

pytestmark = SQLITE_ONLY

CONNECT = re.compile(r"^Connect\b")
DISCONNECT = re.compile(r"^Disconnect\b")


def flow_cookies(context: BrowserContext, service: ServiceProcess) -> list[Cookie]:
    """The flow-binding cookies the browser would send to the callback (cookies ignore ports, so
    the provider's own cookies on 127.0.0.1 come along too and are left out by name)."""
    return [
        c
        for c in context.cookies(f"{service.api}/callback")
        if c["name"].startswith(binding.COOKIE_PREFIX)
    ]


def connector_card(page: Page, key: str = PROVIDER_KEY) -> Locator:
    return page.locator(f'[data-connector="{key}"]')


def test_connect_in_a_popup_then_disconnect(
    api: httpx.Client,
    tenant: Tenant,
    service: ServiceProcess,
    context: BrowserContext,
    shots: Screenshots,
) -> None:
    page = open_connect_page(
        context, create_connect_session(api, tenant.headers, tenant.org), service.base_url
    )
    # The one-time link is gone from the address bar; the page runs on an HttpOnly cookie.
    assert "cs_" not in page.url
    cookies = context.cookies(f"{service.base_url}/connect")
    assert cookies, "the connect link set no cookie"
    assert all(c["httpOnly"] and c["sameSite"] in ("Lax", "Strict") for c in cookies), cookies

    card = connector_card(page)
    expect(card).to_be_visible()
    connect_button = card.get_by_role("button", name=CONNECT)
    expect(connect_button).to_be_visible()
    expect(page.locator("[data-connection-id]")).to_have_count(0)
    shots(page, "connect-page")

    # A marker that only survives if the list updates in place (no reload, no navigation).
    page.evaluate("window.__pcNoReload = true")
    with page.expect_popup() as popup_info:
        connect_button.click()
    popup = popup_info.value
    assert popup.evaluate("window.name") == "pc-connect"
    # The flow is bound to this browser by an HttpOnly, SameSite=Lax cookie the callback reads.
    expect(popup.locator("input[name=login]")).to_be_visible()
    bound = flow_cookies(context, service)
    assert len(bound) == 1 and bound[0]["httpOnly"] and bound[0]["sameSite"] == "Lax", bound
    # Listen before signing in: the result page closes the popup at once, possibly before
    # a later wait_for_event could register.
    with popup.expect_event("close"):
        sign_in_and_consent(popup, shots, login="carol", prefix="popup")
    assert flow_cookies(context, service) == [], "the callback left the flow cookie behind"

    connection = page.locator("[data-connection-id]")
    expect(connection).to_have_count(1)
    message = page.locator("#connect-message")
    expect(message).to_have_attribute("role", "status")
    expect(message).not_to_be_empty()
    shots(page, "connected")
    assert page.evaluate("window.__pcNoReload") is True, "the page reloaded instead of updating"

    connection_id = connection.get_attribute("data-connection-id")
    assert connection_id and connection_id.startswith("conn_")
    assert connection_ids(api, tenant.headers, tenant.org) == {connection_id}
    [listed] = api.get("", params=tenant.org, headers=tenant.headers).json()
    assert listed["account_id"] == "carol" and listed["status"] == "active"
    expect(connection).to_contain_text(re.compile("active|connected", re.IGNORECASE))

    # Disconnect asks first; Cancel keeps the connection.
    disconnect_button = connection.get_by_role("button", name=DISCONNECT)
    disconnect_button.click()
    dialog = page.locator("dialog[open]")
    expect(dialog).to_be_visible()
    shots(page, "confirm-disconnect")
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_have_count(0)
    expect(connection).to_have_count(1)
    assert connection_ids(api, tenant.headers, tenant.org) == {connection_id}

    disconnect_button.click()
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name="Disconnect", exact=True).click()
    expect(page.locator("[data-connection-id]")).to_have_count(0)
    expect(message).not_to_be_empty()
    shots(page, "disconnected")
    assert connection_ids(api, tenant.headers, tenant.org) == set()
    # The connector stays offered, ready to connect again.
    expect(card.get_by_role("button", name=CONNECT)).to_be_visible()


def test_blocked_popup_falls_back_to_a_full_page_redirect(
    api: httpx.Client,
    tenant: Tenant,
    service: ServiceProcess,
    oidc: OidcProvider,
    new_context: Callable[..., BrowserContext],
    shots: Screenshots,
) -> None:
    context = new_context()
    # A popup blocker: window.open gives nothing back, as browsers do when they block one.
    context.add_init_script("window.open = function () { return null; };")
    page = open_connect_page(
        context, create_connect_session(api, tenant.headers, tenant.org), service.base_url
    )
    shots(page, "connect-page")
    connector_card(page).get_by_role("button", name=CONNECT).click()
    page.wait_for_url(lambda url: origin(url) == oidc.issuer)
    assert len(context.pages) == 1

    sign_in_and_consent(page, shots, login="dave")
    # Back on the connect page (not a dead-end callback page), which shows the new connection.
    page.wait_for_url(f"{service.base_url}/connect**")
    [connection_id] = connection_ids(api, tenant.headers, tenant.org)
    expect(page.locator(f'[data-connection-id="{connection_id}"]')).to_be_visible()
    message = page.locator("#connect-message")
    expect(message).to_have_attribute("role", "status")
    expect(message).not_to_be_empty()
    shots(page, "back-on-connect-page")
    assert flow_cookies(context, service) == [], "the callback left the flow cookie behind"


@pytest.mark.parametrize(
    "other_browser_has_a_session", [False, True], ids=["no-cookie", "own-cookie"]
)
def test_a_flow_finished_in_another_browser_is_refused(
    other_browser_has_a_session: bool,
    api: httpx.Client,
    tenant: Tenant,
    other_tenant: Tenant,
    service: ServiceProcess,
    oidc: OidcProvider,
    new_context: Callable[..., BrowserContext],
    shots: Screenshots,
) -> None:
    victim = new_context()
    page = open_connect_page(
        victim, create_connect_session(api, tenant.headers, tenant.org), service.base_url
    )
    authorization_endpoint = oidc.metadata["authorization_endpoint"]

    def is_authorization_request(request: Request) -> bool:
        return request.url.startswith(authorization_endpoint + "?")

    with (
        victim.expect_event("request", predicate=is_authorization_request) as seen,
        page.expect_popup() as popup_info,
    ):
        connector_card(page).get_by_role("button", name=CONNECT).click()
    authorization_url = seen.value.url
    popup = popup_info.value
    expect(popup.locator("input[name=login]")).to_be_visible()
    shots(popup, "victim-popup-at-provider")

    # The provider URL is carried to a different browser: one without a connect cookie, or one
    # with its own connect session (another user's), i.e. a different cookie.
    attacker = new_context()
    if other_browser_has_a_session:
        open_connect_page(
            attacker,
            create_connect_session(api, other_tenant.headers, other_tenant.org),
            service.base_url,
        )
    other = attacker.new_page()
    other.goto(authorization_url)
    sign_in_and_consent(other, shots, login="mallory", prefix="other-browser")
    other.wait_for_url(lambda url: origin(url) == service.base_url)
    expect(other.locator("body")).to_contain_text(re.compile("browser", re.IGNORECASE))
    shots(other, "refused")

    assert connection_ids(api, tenant.headers, tenant.org) == set()
    assert connection_ids(api, other_tenant.headers, other_tenant.org) == set()
    expect(page.locator("[data-connection-id]")).to_have_count(0)


def test_reconnect_a_connection_that_needs_reauthorization(
    api: httpx.Client,
    tenant: Tenant,
    service: ServiceProcess,
    context: BrowserContext,
    shots: Screenshots,
) -> None:
    connection_id = connect_without_browser(
        api, tenant.headers, tenant.org, PROVIDER_KEY, login="frank"
    )
    off_thread(
        lambda: update_connection(service, connection_id, status=ConnectionStatus.NEEDS_REAUTH)
    )
    page = open_connect_page(
        context, create_connect_session(api, tenant.headers, tenant.org), service.base_url
    )
    row = page.locator(f'[data-connection-id="{connection_id}"]')
    expect(row).to_be_visible()
    reconnect = page.get_by_role("button", name=re.compile(r"^Reconnect\b"))
    expect(reconnect).to_have_count(1)
    shots(page, "needs-reauth")

    with page.expect_popup() as popup_info:
        reconnect.click()
    popup = popup_info.value
    # Listen before signing in: the result page closes the popup at once, possibly before
    # a later wait_for_event could register.
    with popup.expect_event("close"):
        sign_in_and_consent(popup, shots, login="frank", prefix="popup")

    # The same account re-authorized: the same connection, active again, listed once.
    expect(page.locator("[data-connection-id]")).to_have_count(1)
    expect(reconnect).to_have_count(0)
    expect(page.locator("#connect-message")).to_have_attribute("role", "status")
    shots(page, "reconnected")
    [listed] = api.get("", params=tenant.org, headers=tenant.headers).json()
    assert listed["id"] == connection_id and listed["status"] == "active"
