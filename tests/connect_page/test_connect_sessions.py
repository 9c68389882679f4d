"""Connect sessions: created with the user's API key, refused when malformed, stored only as a
hash, good for the connect page only, and traded for an HttpOnly cookie at once."""

from __future__ import annotations

from datetime import datetime, timedelta

import httpx
import pytest
from sqlalchemy import select

from personal_connectors.crypto.hashing import digest
from personal_connectors.models import (
    APIKey,
    APIKeyStatus,
    ConnectionStatus,
    ConnectSession,
    Membership,
    utcnow,
)
from tests.conftest import FAULTY_KEY, PROVIDER_KEY, RETURN_ORIGIN, STATELESS_KEY, Tenant
from tests.connect_page.conftest import (
    browser,
    confirm_link,
    connections_on,
    connectors_on,
    cookie_header,
    create_session,
    envelope_error,
    message_of,
    open_page,
    session_count,
)
from tests.flows.conftest import connect
from tests.support.db import update_connection, update_row
from tests.support.service import ServiceProcess


def test_a_session_is_created_for_the_caller(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess
) -> None:
    before = utcnow()
    created = create_session(api, tenant)
    assert set(created) == {"token", "connect_url", "expires_at"}
    token = created["token"]
    assert token.startswith("cs_") and len(token) >= 40
    assert created["connect_url"] == f"{service.base_url}/connect?session={token}"
    expires_at = datetime.fromisoformat(created["expires_at"])
    assert timedelta(seconds=1790) < expires_at - before < timedelta(seconds=1810)

    async def work(session, runtime):  # type: ignore[no-untyped-def]
        return (
            await session.execute(
                select(ConnectSession).where(
                    ConnectSession.organization_id == tenant.organization_id
                )
            )
        ).scalar_one()

    row = service.run_db(work)
    # Only the hash is stored; the session belongs to the caller in that organization.
    assert row.token_hash == digest(token)
    assert token not in repr(row.__dict__)
    assert (row.user_id, row.api_key_id) == (tenant.user_id, tenant.api_key_id)
    assert row.allowed_connectors is None


def test_options_are_kept(api: httpx.Client, tenant: Tenant, service: ServiceProcess) -> None:
    before = utcnow()
    created = create_session(
        api,
        tenant,
        allowed_connectors=[PROVIDER_KEY, "github", PROVIDER_KEY],
        return_url=f"{RETURN_ORIGIN}/settings",
        expires_in=60,
    )
    expires_at = datetime.fromisoformat(created["expires_at"])
    assert timedelta(seconds=55) < expires_at - before < timedelta(seconds=70)
    client = browser(service)
    page = open_page(client, created["connect_url"]).text
    assert connectors_on(page) == [PROVIDER_KEY, "github"]  # de-duplicated, in order
    assert f'href="{RETURN_ORIGIN}/settings"' in page


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"allowed_connectors": ["no-such-connector"]}, "allowed_connectors"),
        ({"allowed_connectors": []}, "allowed_connectors"),
        ({"allowed_connectors": "local-oidc"}, "allowed_connectors"),
        ({"return_url": "https://evil.example/back"}, "return_url"),
        ({"return_url": "javascript:alert(1)"}, "return_url"),
        ({"expires_in": 59}, "expires_in"),
        ({"expires_in": 86401}, "expires_in"),
        ({"expires_in": "soon"}, "expires_in"),
        ({"expire_in": 600}, "expire_in"),
    ],
)
def test_bad_requests_are_refused_and_store_nothing(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess, body: dict[str, object], field: str
) -> None:
    response = api.post("/connect-sessions", params=tenant.org, headers=tenant.headers, json=body)
    assert response.status_code == 400, response.text
    error = envelope_error(response, 400, "VALIDATION_ERROR")
    assert field in error["details"]["fields"]
    assert session_count(service, tenant.organization_id) == 0


def test_creating_needs_the_users_key_and_membership(
    api: httpx.Client, tenant: Tenant, other_tenant: Tenant
) -> None:
    assert api.post("/connect-sessions", params=tenant.org, json={}).status_code == 401
    foreign = api.post(
        "/connect-sessions", params=other_tenant.org, headers=tenant.headers, json={}
    )
    assert foreign.status_code == 403
    assert api.post("/connect-sessions", headers=tenant.headers, json={}).status_code == 400


def test_the_token_is_not_an_api_key(api: httpx.Client, tenant: Tenant) -> None:
    token = create_session(api, tenant)["token"]
    for headers in ({"X-API-Key": token}, {"Authorization": f"Bearer {token}"}):
        response = api.get("", params=tenant.org, headers=headers)
        envelope_error(response, 401, "INVALID_API_KEY")
        response = api.post("/connect-sessions", params=tenant.org, headers=headers, json={})
        assert response.status_code == 401


def test_the_link_becomes_an_http_only_cookie(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess
) -> None:
    created = create_session(api, tenant)
    client = browser(service)
    landing = confirm_link(client, created["connect_url"])
    assert landing.status_code == 303
    # The token leaves the address bar: the page lives at plain /connect.
    assert landing.headers["location"] == "/connect"
    assert landing.headers["referrer-policy"] == "no-referrer"
    cookie = cookie_header(landing, "pc_connect=").lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "path=/connect" in cookie
    assert "secure" not in cookie  # the test service is plain http on loopback
    assert client.get("/connect").status_code == 200
    # Without the cookie, the page is closed.
    closed = browser(service).get("/connect")
    assert closed.status_code == 401
    assert "Your session has ended" in closed.text
    assert created["token"] not in closed.text


def test_an_expired_or_unknown_link_shows_an_error_page(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess
) -> None:
    created = create_session(api, tenant, expires_in=60)
    client = browser(service)
    open_page(client, created["connect_url"])

    async def expire(session, runtime):  # type: ignore[no-untyped-def]
        row = (
            await session.execute(
                select(ConnectSession).where(ConnectSession.token_hash == digest(created["token"]))
            )
        ).scalar_one()
        return row.id

    update_row(
        service, ConnectSession, service.run_db(expire), expires_at=utcnow() - timedelta(seconds=1)
    )
    for url in (created["connect_url"], "/connect?session=cs_unknown", "/connect?session=ak_x"):
        response = browser(service).get(url)
        assert response.status_code == 400
        assert response.headers["content-type"].startswith("text/html")
        assert "This link has expired" in response.text
        assert "set-cookie" not in response.headers
    # A browser that opened it before is shut out too.
    assert client.get("/connect").status_code == 401


def test_the_page_lists_connectors_and_connections(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess
) -> None:
    first = connect(api, tenant, login="alice")
    second = connect(api, tenant, login="bob")
    update_connection(service, second, status=ConnectionStatus.NEEDS_REAUTH)
    client = browser(service)
    page = open_page(client, create_session(api, tenant)["connect_url"])
    html = page.text
    # Every configured connector (these tests configure local, faulty and stateless OIDC),
    # none of the unconfigured built-ins.
    listed = connectors_on(html)
    assert {PROVIDER_KEY, FAULTY_KEY, STATELESS_KEY} <= set(listed)
    assert "github" not in listed and "slack" not in listed
    assert 'aria-hidden="true">L</span>' in html  # no icon in the catalog: a letter badge
    assert 'Connect<span class="visually-hidden"> Local OIDC</span>' in html
    # The user's connections with account and status; Reconnect only where it is needed.
    assert sorted(connections_on(html)) == sorted([first, second])
    assert "alice@" in html and "bob@" in html
    needs = html.split(f'data-connection-id="{second}"')[1].split("</li>")[0]
    active = html.split(f'data-connection-id="{first}"')[1].split("</li>")[0]
    assert "Needs reconnecting" in needs and "Reconnect" in needs and "Disconnect" in needs
    assert "Active" in active and "Reconnect" not in active
    assert message_of(html) == ("status", "")
    # A page that is safe to show: strict CSP without inline script, basics of accessibility.
    csp = page.headers["content-security-policy"]
    assert "script-src 'nonce-" in csp and "unsafe-inline'" not in csp.split("style-src")[0]
    assert "connect-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert page.headers["referrer-policy"] == "same-origin"
    assert page.headers["cache-control"] == "no-store"
    assert '<html lang="en">' in html and 'name="viewport"' in html
    assert "<script>" not in html and 'src="/connect/static/connect.js"' in html
    script = client.get("/connect/static/connect.js")
    assert script.status_code == 200 and "personal-connectors:result" in script.text
    assert script.headers["content-type"].startswith("text/javascript")
    assert client.get("/connect/static/nothing.js").status_code == 404


def test_an_allow_list_limits_connectors_and_connections(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess
) -> None:
    connect(api, tenant)
    created = create_session(api, tenant, allowed_connectors=["github", STATELESS_KEY])
    html = open_page(browser(service), created["connect_url"]).text
    assert connectors_on(html) == ["github", STATELESS_KEY]
    # github is offered by the link but not set up here: shown, with a disabled button.
    github = html.split('data-connector="github"')[1].split("</li>")[0]
    assert "Not set up for your organization yet" in github and "disabled" in github
    assert "https://github.com/favicon.ico" in github  # the catalog's icon
    # The local-oidc connection is outside this link's scope.
    assert connections_on(html) == []


def test_a_member_removed_from_the_organization_loses_the_page(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess
) -> None:
    client = browser(service)
    open_page(client, create_session(api, tenant)["connect_url"])

    async def leave(session, runtime):  # type: ignore[no-untyped-def]
        membership = (
            await session.execute(
                select(Membership).where(
                    Membership.user_id == tenant.user_id,
                    Membership.organization_id == tenant.organization_id,
                )
            )
        ).scalar_one()
        await session.delete(membership)
        await session.commit()

    service.run_db(leave)
    assert client.get("/connect").status_code == 401


def test_a_round_trip_result_is_shown_from_a_fixed_vocabulary(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess
) -> None:
    client = browser(service)
    open_page(client, create_session(api, tenant)["connect_url"])
    cases = {
        "/connect?result=connected&connector=local-oidc": ("status", "Local OIDC is connected."),
        "/connect?result=error&error=access_denied&connector=local-oidc": (
            "alert",
            "Access was not granted, so nothing was connected.",
        ),
        # Whatever else the query says is never echoed: unknown codes, markup, foreign keys.
        "/connect?result=error&error=%3Cscript%3Ealert(1)%3C/script%3E&connector=%3Cb%3E": (
            "alert",
            "The sign-in failed because of an error. Please try again.",
        ),
        "/connect?result=error&error=call_0800_now&connector=local-oidc": (
            "alert",
            "The account could not be connected. Please try again.",
        ),
        "/connect?result=%3Cscript%3E": ("status", ""),
    }
    for url, expected in cases.items():
        page = client.get(url).text
        assert message_of(page) == expected, url
        assert "<script>alert" not in page and "<b>" not in page


def test_revoking_the_key_closes_its_links(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess
) -> None:
    created = create_session(api, tenant)
    client = browser(service)
    open_page(client, created["connect_url"])
    update_row(service, APIKey, tenant.api_key_id, status=APIKeyStatus.DEACTIVATED)
    assert client.get("/connect").status_code == 401
    assert browser(service).get(created["connect_url"]).status_code == 400
