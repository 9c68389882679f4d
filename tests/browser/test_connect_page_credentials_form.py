"""The connect page's form for an API-key connector (SPEC §10) in a real Chromium: a person
opens the form from the page, sees labelled fields (the key masked) and where to find the key,
submits it, and lands back on the page with the connection listed; a key the provider refuses
is said so on the form and nothing is stored."""

from __future__ import annotations

import re

import httpx
from playwright.sync_api import BrowserContext, Page, expect

from tests.conftest import Tenant
from tests.support.browser import SQLITE_ONLY, Screenshots, connection_ids, open_connect_page
from tests.support.credentials_api import KEY_API, CredentialsApi
from tests.support.service import ServiceProcess

pytestmark = SQLITE_ONLY


def open_key_form(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess, context: BrowserContext
) -> Page:
    created = api.post(
        "/connect-sessions",
        params=tenant.org,
        headers=tenant.headers,
        json={"allowed_connectors": [KEY_API]},
    )
    assert created.status_code == 201, created.text
    page = open_connect_page(context, created.json()["connect_url"], service.base_url)
    page.get_by_role("link", name=re.compile(r"^Connect\b.*Key API")).click()
    expect(page).to_have_url(f"{service.base_url}/connect/credentials/{KEY_API}")
    expect(page.get_by_role("heading", name="Connect Key API")).to_be_visible()
    return page


def test_a_person_connects_with_an_api_key_in_the_form(
    api: httpx.Client,
    tenant: Tenant,
    service: ServiceProcess,
    context: BrowserContext,
    shots: Screenshots,
    credentials_api: CredentialsApi,
) -> None:
    page = open_key_form(api, tenant, service, context)
    # The field is named by its visible label, masked, and points at where the key is made.
    label = page.locator("label[for=field-api_key]")
    expect(label).to_be_visible()
    expect(label).to_have_text("API key")
    key_input = page.get_by_label("API key")
    expect(key_input).to_be_visible()
    expect(key_input).to_have_attribute("type", "password")
    help_link = page.get_by_role("link", name="Where do I find this?")
    expect(help_link).to_be_visible()
    expect(help_link).to_have_attribute("href", "https://keyapi.example/settings/keys")
    shots(page, "form")

    key = credentials_api.add_api_key("acct-browser")
    key_input.fill(key)
    page.get_by_role("button", name="Connect").click()

    # Back on the connect page (whose script then tidies the address bar), which says so and
    # lists the new connection.
    expect(page).to_have_url(re.compile(rf"^{re.escape(service.base_url)}/connect(\?|$)"))
    expect(page.locator("#connect-message")).to_have_text("Key API is connected.")
    item = page.locator(f'[data-connection-id][data-connector-key="{KEY_API}"]')
    expect(item).to_have_count(1)
    expect(item).to_contain_text("acct-browser")
    shots(page, "connected")
    assert key not in page.content()
    [connection_id] = connection_ids(api, tenant.headers, tenant.org)
    expect(item).to_have_attribute("data-connection-id", connection_id)
    handed = api.post(f"/{connection_id}/token", params=tenant.org, headers=tenant.headers)
    assert handed.status_code == 200 and handed.json()["credentials"] == {"api_key": key}


def test_a_refused_key_is_said_on_the_form_and_nothing_is_stored(
    api: httpx.Client,
    tenant: Tenant,
    service: ServiceProcess,
    context: BrowserContext,
    shots: Screenshots,
    credentials_api: CredentialsApi,
) -> None:
    page = open_key_form(api, tenant, service, context)
    refused = "kk_" + "r" * 30  # the right shape, unknown to the provider
    page.get_by_label("API key").fill(refused)
    page.get_by_role("button", name="Connect").click()

    message = page.get_by_role("alert")
    expect(message).to_be_visible()
    expect(message).to_contain_text("refused these credentials")
    shots(page, "refused")
    # Still the form, the key not written back into it; no connection anywhere.
    expect(page).to_have_url(f"{service.base_url}/connect/credentials/{KEY_API}")
    expect(page.get_by_label("API key")).to_have_value("")
    assert refused not in page.content()
    assert connection_ids(api, tenant.headers, tenant.org) == set()
