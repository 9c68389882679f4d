"""Provider quirks, end to end through the running service against the fake provider.

Each test connects through the real ``POST /authorize`` → the provider's authorize (which sends
the browser straight back) → ``GET /callback``, then uses the connection's token endpoint and
disconnects, and checks what the provider saw.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from tests.conftest import CLIENT_ID, CLIENT_SECRET, Tenant
from tests.flows.conftest import follow_callback
from tests.support import web
from tests.support.db import event_types, stored_tokens
from tests.support.fake_provider import INSTANCE_URL, REALM_ID, TEAM, FakeProvider
from tests.support.service import ServiceProcess


def authorize(api: httpx.Client, tenant: Tenant, key: str, **body: Any) -> dict[str, Any]:
    response = api.post(
        "/authorize",
        params=tenant.org,
        headers=tenant.headers,
        json={"connector_type": key, **body},
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def consent(authorization_url: str) -> str:
    """What the browser does at the fake provider: it redirects straight back with a code."""
    answer = web.get(authorization_url, follow_redirects=False, timeout=10)
    assert answer.status_code == 302, answer.text
    return answer.headers["location"]


def connect(api: httpx.Client, tenant: Tenant, key: str) -> tuple[str, dict[str, str]]:
    started = authorize(api, tenant, key)
    callback = follow_callback(consent(started["authorization_url"]))
    assert callback.status_code == 200, callback.text
    query = {k: v[0] for k, v in parse_qs(urlsplit(started["authorization_url"]).query).items()}
    return str(callback.json()["data"]["connection_id"]), query


def get(api: httpx.Client, tenant: Tenant, connection_id: str) -> dict[str, Any]:
    response = api.get(f"/{connection_id}", params=tenant.org, headers=tenant.headers)
    assert response.status_code == 200, response.text
    return dict(response.json())


def token(api: httpx.Client, tenant: Tenant, connection_id: str, **params: str) -> dict[str, Any]:
    response = api.post(
        f"/{connection_id}/token", params={**tenant.org, **params}, headers=tenant.headers
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def expires_in(value: str | None) -> float:
    assert value is not None
    return (datetime.fromisoformat(value) - datetime.now(UTC)).total_seconds()


def test_slack_like_nested_user_token(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess, fake_provider: FakeProvider
) -> None:
    connection_id, query = connect(api, tenant, "fake-slackish")
    # Scopes went out as user_scope; no bot scope, no PKCE (the entry says the provider has none).
    assert query["user_scope"] == "users:read,chat:write"
    assert "scope" not in query and "code_challenge" not in query

    connection = get(api, tenant, connection_id)
    assert connection["account_id"] == "U042"  # identity read from authed_user in the answer
    assert connection["scopes"] == ["users:read", "chat:write"]
    assert connection["provider_metadata"] == {"team_id": TEAM["id"], "team_name": TEAM["name"]}
    assert 43000 < expires_in(connection["expires_at"]) <= 43200

    access_token, refresh_token = stored_tokens(service, connection_id)
    assert access_token is not None and access_token.startswith("at-slackish-")  # not the bot's
    assert refresh_token is not None and refresh_token.startswith("rt-slackish-")
    issued = token(api, tenant, connection_id)
    assert issued["access_token"] == access_token
    assert issued["token_type"] == "Bearer"  # Slack's "bot"/"user" labels are no HTTP scheme
    assert issued["provider_metadata"]["team_id"] == TEAM["id"]

    assert api.delete(f"/{connection_id}", headers=tenant.headers).status_code == 204
    [revoke] = [
        call
        for call in fake_provider.calls_to("slackish", "auth.revoke", "GET")
        if call.bearer() == access_token
    ]
    assert revoke.body == ""
    assert not fake_provider.is_live(access_token)
    assert event_types(service, connection_id)[-2:] == ["connection.revoked", "connection.deleted"]


def test_github_like_form_encoded_answer_and_grant_deletion(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess, fake_provider: FakeProvider
) -> None:
    connection_id, query = connect(api, tenant, "fake-githubish")
    assert query["scope"] == "read:user" and query["code_challenge_method"] == "S256"

    connection = get(api, tenant, connection_id)
    assert connection["account_id"] == "4242"
    # /user's e-mail is null: the primary verified address came from /user/emails.
    assert connection["account_email"] == "o@example.test"
    assert fake_provider.calls_to("githubish", "user/emails", "GET")
    assert connection["account_name"] == "octo"  # name is null: the fallback path gave it
    assert connection["scopes"] == ["read:user"]
    assert connection["expires_at"] is None  # no expires_in and no default: never expires
    assert connection["provider_metadata"] == {}
    access_token, refresh_token = stored_tokens(service, connection_id)
    assert access_token is not None and access_token.startswith("at-githubish-")
    assert refresh_token is None
    assert access_token not in str(connection)
    assert token(api, tenant, connection_id)["access_token"] == access_token

    assert api.delete(f"/{connection_id}", headers=tenant.headers).status_code == 204
    calls = [
        call
        for call in fake_provider.calls_to("githubish", f"applications/{CLIENT_ID}/grant")
        if call.body and call.json.get("access_token") == access_token
    ]
    assert len(calls) == 1
    [call] = calls
    assert call.method == "DELETE"
    assert call.basic_auth() == (CLIENT_ID, CLIENT_SECRET)
    assert call.headers["content-type"] == "application/json"
    assert call.json == {"access_token": access_token}
    assert not fake_provider.is_live(access_token)
    assert "connection.revoked" in event_types(service, connection_id)


def test_salesforce_like_metadata_default_lifetime_refresh_url_and_custom_revocation(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess, fake_provider: FakeProvider
) -> None:
    connection_id, _ = connect(api, tenant, "fake-salesforceish")
    connection = get(api, tenant, connection_id)
    assert connection["provider_metadata"] == {
        "instance_url": INSTANCE_URL,
        "identity_url": "https://login.example.test/id/00D/005",
        "realmId": REALM_ID,  # from the redirect's query, not the token answer
    }
    assert "signature" not in str(connection)
    # No expires_in in the answer: the entry's default lifetime (3600 s) applies.
    assert 3500 < expires_in(connection["expires_at"]) <= 3600
    first_access, first_refresh = stored_tokens(service, connection_id)
    assert first_refresh == "rt-salesforceish-first"

    refreshes_before = len(fake_provider.calls_to("salesforceish", "refresh"))
    tokens_before = len(fake_provider.calls_to("salesforceish", "token"))
    refreshed = token(api, tenant, connection_id, force_refresh="true")
    assert refreshed["access_token"] != first_access
    assert refreshed["provider_metadata"]["instance_url"] == INSTANCE_URL
    # The refresh went to refresh_url, not token_url, and the old refresh token was kept.
    assert len(fake_provider.calls_to("salesforceish", "refresh")) == refreshes_before + 1
    assert len(fake_provider.calls_to("salesforceish", "token")) == tokens_before
    assert stored_tokens(service, connection_id) == (refreshed["access_token"], first_refresh)
    assert 3500 < expires_in(refreshed["expires_at"]) <= 3600

    assert api.delete(f"/{connection_id}", headers=tenant.headers).status_code == 204
    calls = [
        call
        for call in fake_provider.calls_to("salesforceish", "revoke", "POST")
        if call.form.get("token") == first_refresh
    ]
    assert calls, "no revocation call reached the provider"
    call = calls[-1]
    assert call.headers["x-fake-version"] == "7"
    assert "authorization" not in call.headers
    assert call.form == {
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "token": first_refresh,
        "realm": REALM_ID,
    }
    assert not fake_provider.is_live(refreshed["access_token"])
    assert "connection.revoked" in event_types(service, connection_id)


def test_metadata_survives_explicit_completion(
    api: httpx.Client, tenant: Tenant, fake_provider: FakeProvider
) -> None:
    started = authorize(api, tenant, "fake-salesforceish", completion="explicit")
    callback = follow_callback(consent(started["authorization_url"]))
    assert callback.status_code == 200, callback.text
    completed = api.post(
        "/complete-oauth",
        params=tenant.org,
        headers=tenant.headers,
        json={"state_token": started["state_token"]},
    )
    assert completed.status_code == 200 and completed.json()["connected"] is True
    connection = get(api, tenant, completed.json()["connection"]["id"])
    assert connection["provider_metadata"]["realmId"] == REALM_ID
    assert connection["provider_metadata"]["instance_url"] == INSTANCE_URL
    assert 3500 < expires_in(connection["expires_at"]) <= 3600
    listed = api.get("", params=tenant.org, headers=tenant.headers).json()
    assert listed[0]["provider_metadata"]["instance_url"] == INSTANCE_URL
