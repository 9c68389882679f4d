"""return_url is judged as browsers parse it (WHATWG URL): what a browser would visit is what
is checked against the allowed origins, and what is checked is what is later sent."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import RETURN_ORIGIN, Tenant
from tests.connect_page.conftest import browser, envelope_error, open_page
from tests.flows.conftest import authorize_and_consent, follow_callback
from tests.support.service import ServiceProcess

REFUSED = [
    # A browser goes to evil.example: `\` ends the host of an http(s) URL.
    "https://evil.example\\@app.example.test/",
    "https://evil.example\\.app.example.test/",
    # Userinfo in front of an allowed host is refused outright (a phishing aid).
    "https://app.example.test@evil.example/",
    "https://user:pw@app.example.test/",
    # Malformed ports and IPv6 hosts: a clear 400, never a 500.
    "https://app.example.test:99999/",
    "https://app.example.test:abc/",
    "https://[::1/",
    "https://[zz::1]/",
    "javascript:alert(1)//app.example.test",
    "//app.example.test/relative",
]


@pytest.mark.parametrize("url", REFUSED)
def test_a_return_url_browsers_read_otherwise_is_refused(
    api: httpx.Client, tenant: Tenant, url: str
) -> None:
    for path in ("/authorize", "/connect-sessions"):
        response = api.post(
            path,
            params=tenant.org,
            headers=tenant.headers,
            json={"connector_type": "local-oidc", "return_url": url}
            if path == "/authorize"
            else {"return_url": url},
        )
        error = envelope_error(response, 400, "VALIDATION_ERROR")
        assert error["details"]["fields"] == ["return_url"], path


def test_the_redirect_goes_to_the_url_as_parsed(api: httpx.Client, tenant: Tenant) -> None:
    flow = authorize_and_consent(
        api, tenant, return_url="HTTPS://APP.example.test:443/back?tab=2#top"
    )
    back = follow_callback(flow.callback_url, accept="text/html")
    assert back.status_code == 303
    location = back.headers["location"]
    assert location.startswith(f"{RETURN_ORIGIN}/back?tab=2&state=state_")
    assert location.endswith("#top") and "connected=true" in location


def test_the_done_link_is_the_parsed_allowed_url(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess
) -> None:
    created = api.post(
        "/connect-sessions",
        params=tenant.org,
        headers=tenant.headers,
        json={"return_url": "https://APP.example.test/done?x=1"},
    )
    assert created.status_code == 201, created.text
    html = open_page(browser(service), created.json()["connect_url"]).text
    assert f'href="{RETURN_ORIGIN}/done?x=1"' in html
