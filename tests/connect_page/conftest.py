"""Helpers for the connect page's HTTP-level tests: a "browser" is an httpx client with its own
cookie jar talking to the real service; the provider's forms are driven by login_and_consent."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from html import unescape
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import httpx
from sqlalchemy import func, select

from personal_connectors.crypto.aead import associated_data
from personal_connectors.models import ConnectSession, Flow
from tests.conftest import PROVIDER_KEY, Tenant
from tests.support import web
from tests.support.envelope import is_envelope
from tests.support.oidc import login_and_consent
from tests.support.service import ServiceProcess

FLOW_COOKIE = re.compile(r"^pc_flow_(flow_[0-9a-f]+)$")


def envelope_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The SPEC §2 error of a response, checked for status and code."""
    assert response.status_code == status, response.text
    body = response.json()
    assert is_envelope(body, status), body
    assert body["error"]["code"] == code, body
    return dict(body["error"])


def create_session(api: httpx.Client, tenant: Tenant, **body: Any) -> dict[str, Any]:
    response = api.post("/connect-sessions", params=tenant.org, headers=tenant.headers, json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


def browser(service: ServiceProcess) -> httpx.Client:
    """A fresh browser: its own cookie jar, redirects not followed (each hop is checked)."""
    return web.client(base_url=service.base_url, timeout=30, follow_redirects=False)


def confirm_link(
    client: httpx.Client, connect_url: str, decision: str = "continue"
) -> httpx.Response:
    """Open the link as a browser coming from another site does, and answer its interstitial
    (whose session it is) with a click on this service's own page."""
    landing = client.get(connect_url, headers={"Sec-Fetch-Site": "cross-site"})
    assert landing.status_code == 200, landing.text
    assert 'action="/connect/session"' in landing.text
    token = parse_qs(urlsplit(connect_url).query)["session"][0]
    return client.post(
        "/connect/session",
        data={"session": token, "decision": decision},
        headers={"Origin": str(client.base_url).rstrip("/"), "Sec-Fetch-Site": "same-origin"},
    )


def open_page(client: httpx.Client, connect_url: str) -> httpx.Response:
    """Open the link, continue on its interstitial: the 303 to /connect, then the page itself."""
    entered = confirm_link(client, connect_url)
    assert entered.status_code == 303, entered.text
    assert entered.headers["location"] == "/connect"
    page = client.get("/connect")
    assert page.status_code == 200, page.text
    return page


def launch(client: httpx.Client, launch_url: str, decision: str = "continue") -> httpx.Response:
    """Open a flow's launch URL and press Continue (or "This is not me") on its page, as a
    person does: a GET that changes nothing, then a same-origin POST."""
    page = client.get(launch_url)
    token = parse_qs(urlsplit(launch_url).query)["t"][0]
    if page.status_code != 200:
        return page
    assert 'name="t"' in page.text, page.text
    return client.post(
        urlsplit(launch_url).path,
        data={"t": token, "decision": decision},
        headers={"Origin": str(client.base_url).rstrip("/"), "Sec-Fetch-Site": "same-origin"},
    )


def start(client: httpx.Client, connector: str = PROVIDER_KEY) -> httpx.Response:
    """What the page's Connect button opens in the popup (a same-origin navigation)."""
    return client.get(f"/connect/start/{connector}", headers={"Sec-Fetch-Site": "same-origin"})


def flow_id_of(response: httpx.Response) -> str:
    """The flow a start or launch answer bound to the browser, from its cookie's name."""
    for header in response.headers.get_list("set-cookie"):
        name = header.split("=", 1)[0]
        match = FLOW_COOKIE.match(name)
        if match:
            return match.group(1)
    raise AssertionError(f"no flow cookie in {response.headers.get_list('set-cookie')}")


def cookie_header(response: httpx.Response, name_prefix: str) -> str:
    for header in response.headers.get_list("set-cookie"):
        if header.startswith(name_prefix):
            return header
    raise AssertionError(f"no {name_prefix} cookie")


def connect_via_page(
    client: httpx.Client, connector: str = PROVIDER_KEY, *, login: str = "alice"
) -> tuple[str, str]:
    """Start from the page and consent at the provider: (flow id, callback URL)."""
    started = start(client, connector)
    assert started.status_code == 302, started.text
    return flow_id_of(started), login_and_consent(started.headers["location"], login=login)


def result_data(response: httpx.Response) -> dict[str, Any]:
    """The JSON the result page hands its script (what it posts to the connect page)."""
    match = re.search(
        r'<script type="application/json" id="pc-result">(.*?)</script>', response.text
    )
    assert match, response.text
    return dict(json.loads(match.group(1)))


def connectors_on(page: str) -> list[str]:
    return re.findall(r'data-connector="([^"]+)"', page)


def connections_on(page: str) -> list[str]:
    return re.findall(r'data-connection-id="([^"]+)"', page)


def csrf_of(page: str) -> str:
    match = re.search(r'data-csrf="([0-9a-f]+)"', page)
    assert match, "no CSRF token on the page"
    return match.group(1)


def message_of(page: str) -> tuple[str, str]:
    """(role, text) of the page's #connect-message region."""
    match = re.search(r'<div id="connect-message" role="(\w+)"[^>]*>(.*?)</div>', page, re.S)
    assert match, "no message region"
    return match.group(1), unescape(match.group(2)).strip()


def strip_query(url: str, *names: str) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items() if k not in names}
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))


def flow(service: ServiceProcess, flow_id: str) -> Flow:
    async def work(session, runtime):  # type: ignore[no-untyped-def]
        return await session.get(Flow, flow_id)

    row: Flow = service.run_db(work)
    return row


def code_verifier(service: ServiceProcess, flow_id: str) -> str:
    async def work(session, runtime):  # type: ignore[no-untyped-def]
        row = await session.get(Flow, flow_id)
        return runtime.sealer.open(
            row.key_id, row.code_verifier_ct, associated_data("flows", row.id, "code_verifier")
        )

    verifier: str = service.run_db(work)
    return verifier


def session_count(service: ServiceProcess, organization_id: str) -> int:
    async def work(session, runtime):  # type: ignore[no-untyped-def]
        statement = select(func.count()).where(ConnectSession.organization_id == organization_id)
        return (await session.execute(statement)).scalar_one()

    count: int = service.run_db(work)
    return count


def connection_ids(api: httpx.Client, tenant: Tenant) -> set[str]:
    response = api.get("", params=tenant.org, headers=tenant.headers)
    assert response.status_code == 200, response.text
    return {item["id"] for item in response.json()}


@dataclass
class Page:
    """A browser holding an open connect page."""

    client: httpx.Client
    html: str

    def reload(self) -> str:
        response = self.client.get("/connect")
        assert response.status_code == 200, response.text
        self.html = response.text
        return self.html
