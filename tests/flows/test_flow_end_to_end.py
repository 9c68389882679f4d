"""The whole OAuth flow against a real OpenID provider: authorize → consent → callback →
complete-oauth → list → delete, with revocation proven at the provider."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import httpx

from tests.conftest import CLIENT_ID, CLIENT_SECRET, Tenant
from tests.flows.conftest import (
    assert_flow_failed,
    authorize_and_consent,
    connect,
    follow_callback,
    start_flow,
)
from tests.support.db import event_types as events_of
from tests.support.db import stored_tokens
from tests.support.oidc import OidcProvider, token_request
from tests.support.service import ServiceProcess


def test_authorization_url_carries_pkce_state_and_exact_redirect(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess, oidc: OidcProvider
) -> None:
    started = start_flow(api, tenant)
    url = urlsplit(started["authorization_url"])
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    assert f"{url.scheme}://{url.netloc}{url.path}" == oidc.metadata["authorization_endpoint"]
    assert query["response_type"] == "code"
    assert query["client_id"] == CLIENT_ID
    assert query["redirect_uri"] == f"{service.base_url}/v1/personal-connectors/callback"
    assert query["code_challenge_method"] == "S256"
    assert len(query["code_challenge"]) == 43
    assert query["state"] == started["state"] == started["state_token"]
    assert started["state"].startswith("state_") and len(started["state"]) >= 6 + 43
    assert set(query["scope"].split()) >= {"openid", "email", "offline_access"}
    assert query["prompt"] == "consent"


def test_connect_list_and_delete_revokes_the_grant_at_the_provider(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess, oidc: OidcProvider
) -> None:
    flow = authorize_and_consent(api, tenant, login="alice")
    assert flow.query["iss"] == oidc.issuer

    callback = follow_callback(flow.callback_url)
    assert callback.status_code == 200, callback.text
    data = callback.json()["data"]
    assert callback.json()["success"] is True
    assert data["app_key"] == "local-oidc" and data["status"] == "active"
    connection_id = data["connection_id"]
    assert connection_id.startswith("conn_") and len(connection_id) == 37

    completed = api.post(
        "/complete-oauth",
        params=tenant.org,
        headers=tenant.headers,
        json={"state_token": flow.state},
    )
    assert completed.status_code == 200
    assert completed.json() == {
        "connected": True,
        "connection": {"id": connection_id, "app_key": "local-oidc", "status": "active"},
        "message": "OAuth flow completed successfully",
    }

    listed = api.get("", params=tenant.org, headers=tenant.headers)
    assert listed.status_code == 200
    [item] = listed.json()
    assert item["id"] == item["connector_id"] == connection_id
    assert item["connector_type"] == item["app_key"] == "local-oidc"
    assert item["account_id"] == "alice"
    assert item["account_email"] == "alice@example.test"
    assert item["account_name"] == "Alice"
    assert item["status"] == "active" and item["is_active"] is True
    assert "offline_access" in item["scopes"]
    assert item["expires_at"] is not None
    assert item["mcp_configuration_id"] is None

    access_token, refresh_token = stored_tokens(service, connection_id)
    assert access_token and refresh_token
    assert access_token not in listed.text and refresh_token not in listed.text

    deleted = api.delete(f"/{connection_id}", headers=tenant.headers)
    assert deleted.status_code == 204 and deleted.content == b""
    assert api.get("", params=tenant.org, headers=tenant.headers).json() == []
    assert api.delete(f"/{connection_id}", headers=tenant.headers).status_code == 404

    # The grant is gone at the provider: the refresh token we held no longer works there.
    refreshed = token_request(
        oidc,
        CLIENT_ID,
        CLIENT_SECRET,
        {"grant_type": "refresh_token", "refresh_token": refresh_token},
    )
    assert refreshed.status_code == 400 and refreshed.json()["error"] == "invalid_grant"
    assert stored_tokens(service, connection_id) == (None, None)
    assert events_of(service, connection_id) == [
        "connection.created",
        "connection.revoked",
        "connection.deleted",
    ]


def test_connecting_the_same_account_again_updates_the_connection(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess
) -> None:
    first = connect(api, tenant, login="carol")
    old_access, _ = stored_tokens(service, first)
    second = connect(api, tenant, login="carol")
    assert second == first
    new_access, _ = stored_tokens(service, first)
    assert new_access != old_access
    other = connect(api, tenant, login="dave")
    assert other != first
    listed = api.get("", params=tenant.org, headers=tenant.headers).json()
    assert [item["id"] for item in listed] == [other, first]  # newest first
    assert events_of(service, first) == ["connection.created", "connection.reauthorized"]
    assert (
        api.get(
            "",
            params={**tenant.org, "app_key": "local-oidc", "status": "needs_reauth"},
            headers=tenant.headers,
        ).json()
        == []
    )


def test_explicit_completion_creates_the_connection_at_complete_oauth(
    api: httpx.Client, tenant: Tenant
) -> None:
    flow = authorize_and_consent(api, tenant, completion="explicit")
    before = api.post(
        "/complete-oauth",
        params=tenant.org,
        headers=tenant.headers,
        json={"state_token": flow.state},
    )
    assert before.json() == {
        "connected": False,
        "connection": None,
        "message": before.json()["message"],
    }

    callback = follow_callback(flow.callback_url)
    assert callback.status_code == 200 and callback.json()["data"]["status"] == "authorized"
    assert api.get("", params=tenant.org, headers=tenant.headers).json() == []

    first = api.post(
        "/complete-oauth",
        params=tenant.org,
        headers=tenant.headers,
        json={"state_token": flow.state},
    )
    assert first.status_code == 200 and first.json()["connected"] is True
    again = api.post(
        "/complete-oauth",
        params=tenant.org,
        headers=tenant.headers,
        json={"state_token": flow.state},
    )
    assert again.json() == first.json()
    [item] = api.get("", params=tenant.org, headers=tenant.headers).json()
    assert item["id"] == first.json()["connection"]["id"]


def test_provider_refusal_is_reported_the_same_three_ways(
    api: httpx.Client, tenant: Tenant
) -> None:
    flow = authorize_and_consent(api, tenant, deny=True)
    assert flow.query["error"] == "access_denied"
    assert_flow_failed(api, tenant, flow, "access_denied")

    html_flow = authorize_and_consent(api, tenant, deny=True)
    page = follow_callback(html_flow.callback_url, accept="text/html")
    assert page.status_code == 400 and "Connection cancelled" in page.text
    assert '"connected": false' in page.text

    redirect_flow = authorize_and_consent(
        api, tenant, deny=True, return_url="https://app.example.test/done"
    )
    redirected = follow_callback(redirect_flow.callback_url, accept="text/html")
    assert redirected.status_code == 303
    query = parse_qs(urlsplit(redirected.headers["location"]).query)
    assert query["connected"] == ["false"] and query["error"] == ["access_denied"]


def test_return_url_gets_a_303_with_the_result(api: httpx.Client, tenant: Tenant) -> None:
    flow = authorize_and_consent(api, tenant, return_url="https://app.example.test/connected?tab=2")
    response = follow_callback(flow.callback_url, accept="text/html")
    assert response.status_code == 303
    location = urlsplit(response.headers["location"])
    assert (
        f"{location.scheme}://{location.netloc}{location.path}"
        == "https://app.example.test/connected"
    )
    query = parse_qs(location.query)
    assert (
        query["tab"] == ["2"] and query["state"] == [flow.state] and query["connected"] == ["true"]
    )
    assert query["connection_id"][0].startswith("conn_")


def test_popup_page_posts_the_result_to_the_opener(api: httpx.Client, tenant: Tenant) -> None:
    flow = authorize_and_consent(api, tenant)
    page = follow_callback(flow.callback_url, accept="text/html")
    assert page.status_code == 200
    assert "Account connected" in page.text
    assert '"type": "personal-connector"' in page.text and flow.state in page.text
    assert "window.opener.postMessage" in page.text
    assert "https://app.example.test" in page.text  # posted only to allowed origins
    assert "script-src 'nonce-" in page.headers["content-security-policy"]
    assert page.headers["referrer-policy"] == "no-referrer"
