"""Disconnecting from the connect page: only the page itself may do it (same origin and the
session's CSRF token), only for the session's user, and it revokes like DELETE /{id} does."""

from __future__ import annotations

import httpx

from personal_connectors.models import Connection, ConnectionStatus
from tests.conftest import STATELESS_KEY, Tenant
from tests.connect_page.conftest import (
    browser,
    connection_ids,
    connections_on,
    create_session,
    csrf_of,
    envelope_error,
    message_of,
    open_page,
)
from tests.flows.conftest import connect
from tests.support.db import event_types, stored_tokens
from tests.support.service import ServiceProcess


def _status(service: ServiceProcess, connection_id: str) -> str:
    async def work(session, runtime):  # type: ignore[no-untyped-def]
        return (await session.get(Connection, connection_id)).status

    status: str = service.run_db(work)
    return status


def test_disconnect_needs_the_same_origin_and_the_csrf_token(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess
) -> None:
    connection_id = connect(api, tenant)
    client = browser(service)
    html = open_page(client, create_session(api, tenant)["connect_url"]).text
    csrf = csrf_of(html)
    assert f'name="csrf_token" value="{csrf}"' in html
    path = f"/connect/connections/{connection_id}/disconnect"
    own = service.base_url
    json_accept = {"Accept": "application/json"}
    forged = [
        {},  # neither
        {"X-CSRF-Token": csrf},  # the token, but no Origin (not a browser's fetch)
        {"Origin": "https://evil.example", "X-CSRF-Token": csrf},  # another site
        {"Origin": "null", "X-CSRF-Token": csrf},
        {"Origin": own},  # same origin, no token: a cookie alone is never enough
        {"Origin": own, "X-CSRF-Token": "0" * 64},
    ]
    for headers in forged:
        response = client.post(path, headers={**json_accept, **headers})
        envelope_error(response, 403, "CSRF_CHECK_FAILED")
    # A form posted from another site carries the cookie but neither Origin nor token match.
    response = client.post(
        path,
        headers={"Origin": "https://evil.example"},
        data={"csrf_token": csrf},
    )
    assert response.status_code == 403 and "Not disconnected" in response.text
    assert connection_ids(api, tenant) == {connection_id}
    assert _status(service, connection_id) == ConnectionStatus.ACTIVE

    done = client.post(path, headers={**json_accept, "Origin": own, "X-CSRF-Token": csrf})
    assert done.status_code == 200, done.text
    assert done.json() == {"disconnected": True, "connection_id": connection_id}
    # Revoked and wiped exactly like DELETE /{id}.
    assert connection_ids(api, tenant) == set()
    assert _status(service, connection_id) == ConnectionStatus.DELETED
    assert stored_tokens(service, connection_id) == (None, None)
    assert event_types(service, connection_id)[-2:] == ["connection.revoked", "connection.deleted"]
    assert connections_on(client.get("/connect").text) == []
    # Twice: the connection is gone.
    again = client.post(path, headers={**json_accept, "Origin": own, "X-CSRF-Token": csrf})
    envelope_error(again, 404, "RESOURCE_NOT_FOUND")


def test_the_form_fallback_disconnects_and_comes_back(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess
) -> None:
    connection_id = connect(api, tenant)
    client = browser(service)
    csrf = csrf_of(open_page(client, create_session(api, tenant)["connect_url"]).text)
    response = client.post(
        f"/connect/connections/{connection_id}/disconnect",
        headers={"Origin": service.base_url},
        data={"csrf_token": csrf},
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/connect?result=disconnected"
    page = client.get(response.headers["location"]).text
    assert message_of(page) == ("status", "The account was disconnected.")
    assert connection_ids(api, tenant) == set()


def test_only_the_sessions_own_connections_can_be_disconnected(
    api: httpx.Client, tenant: Tenant, other_tenant: Tenant, service: ServiceProcess
) -> None:
    mine = connect(api, tenant)
    theirs = connect(api, other_tenant)
    client = browser(service)
    csrf = csrf_of(open_page(client, create_session(api, tenant)["connect_url"]).text)
    headers = {"Accept": "application/json", "Origin": service.base_url, "X-CSRF-Token": csrf}
    response = client.post(f"/connect/connections/{theirs}/disconnect", headers=headers)
    envelope_error(response, 404, "RESOURCE_NOT_FOUND")
    assert connection_ids(api, other_tenant) == {theirs}
    # A session limited to other connectors cannot reach this one either.
    limited = browser(service)
    created = create_session(api, tenant, allowed_connectors=[STATELESS_KEY])
    limited_csrf = csrf_of(open_page(limited, created["connect_url"]).text)
    response = limited.post(
        f"/connect/connections/{mine}/disconnect",
        headers={**headers, "X-CSRF-Token": limited_csrf},
    )
    envelope_error(response, 403, "CONNECTOR_NOT_ALLOWED")
    # One session's CSRF token is no good with another session's cookie.
    response = limited.post(f"/connect/connections/{mine}/disconnect", headers=headers)
    envelope_error(response, 403, "CSRF_CHECK_FAILED")
    # No session at all.
    response = browser(service).post(f"/connect/connections/{mine}/disconnect", headers=headers)
    envelope_error(response, 401, "CONNECT_SESSION_INVALID")
    assert connection_ids(api, tenant) == {mine}
