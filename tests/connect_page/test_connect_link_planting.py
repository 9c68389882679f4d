"""A connect link cannot be planted: opened from anywhere but this service's own pages, it
first says whose session it is (user and organization) and waits for a click here. The page
itself always says whose session it is."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import Tenant, make_tenant
from tests.connect_page.conftest import (
    browser,
    confirm_link,
    create_session,
    open_page,
)
from tests.support.service import ServiceProcess


@pytest.mark.parametrize("fetch_site", ["cross-site", "same-site", "none", None])
def test_a_link_from_elsewhere_shows_whose_session_and_sets_nothing(
    api: httpx.Client, service: ServiceProcess, fetch_site: str | None
) -> None:
    tenant = make_tenant(service, email="planter@example.test")
    created = create_session(api, tenant)
    client = browser(service)
    headers = {"Sec-Fetch-Site": fetch_site} if fetch_site else {}
    landing = client.get(created["connect_url"], headers=headers)
    assert landing.status_code == 200, landing.text
    assert "planter@example.test" in landing.text and "Test Org" in landing.text
    assert "set-cookie" not in landing.headers
    assert "frame-ancestors 'none'" in landing.headers["content-security-policy"]
    assert client.get("/connect").status_code == 401  # no session in this browser yet


def test_only_a_same_origin_click_opens_the_page(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess
) -> None:
    created = create_session(api, tenant)
    token = created["token"]
    for headers in (
        {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
        {},
    ):
        client = browser(service)
        refused = client.post(
            "/connect/session", data={"session": token, "decision": "continue"}, headers=headers
        )
        assert refused.status_code == 403
        assert "set-cookie" not in refused.headers
    entered = confirm_link(browser(service), created["connect_url"])
    assert entered.status_code == 303 and entered.headers["location"] == "/connect"


def test_this_is_not_me_ends_the_session(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess
) -> None:
    created = create_session(api, tenant)
    declined = confirm_link(browser(service), created["connect_url"], decision="refuse")
    assert declined.status_code == 200 and "Nothing was connected" in declined.text
    assert "set-cookie" not in declined.headers
    assert browser(service).get(created["connect_url"]).status_code == 400


def test_the_page_says_whose_session_it_is(api: httpx.Client, service: ServiceProcess) -> None:
    tenant = make_tenant(service, email="owner-shown@example.test")
    html = open_page(browser(service), create_session(api, tenant)["connect_url"]).text
    assert 'id="session-owner"' in html
    assert "owner-shown@example.test" in html and "Test Org" in html
