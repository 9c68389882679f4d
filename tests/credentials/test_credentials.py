"""Connections made with credentials other than an authorization code (SPEC §10), against the
loopback API of tests/support/credentials_api.py: proved before they are stored, sealed,
never listed, handed to the caller's tool per mode, minted again when due."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx

from personal_connectors.models import Connection, utcnow
from tests.conftest import PROVIDER_KEY, Tenant
from tests.support.credentials_api import (
    BASIC_API,
    CC_API,
    EMAIL,
    JWT_API,
    KEY_API,
    SERVICE_ACCOUNT,
    CredentialsApi,
)
from tests.support.db import connection_row, event_types, update_connection
from tests.support.platform import make_organization_key
from tests.support.service import ServiceProcess
from tests.tokens.conftest import run_refresher_once


def submit(
    api: httpx.Client,
    caller: Tenant,
    connector_type: str,
    credentials: dict[str, Any],
    **extra: Any,
) -> httpx.Response:
    return api.post(
        "/credentials",
        params=caller.org,
        headers=caller.headers,
        json={"connector_type": connector_type, "credentials": credentials, **extra},
    )


def replace(
    api: httpx.Client, caller: Tenant, connection_id: str, credentials: dict[str, str]
) -> httpx.Response:
    return api.put(
        f"/{connection_id}/credentials",
        params=caller.org,
        headers=caller.headers,
        json={"credentials": credentials},
    )


def token(api: httpx.Client, caller: Tenant, connection_id: str, **params: str) -> httpx.Response:
    return api.post(
        f"/{connection_id}/token", params={**caller.org, **params}, headers=caller.headers
    )


def listed(api: httpx.Client, caller: Tenant, app_key: str) -> list[dict[str, Any]]:
    response = api.get("", params={**caller.org, "app_key": app_key}, headers=caller.headers)
    assert response.status_code == 200, response.text
    return list(response.json())


def error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()["error"]
    assert body["code"] == code, body
    return body


def stored_row(service: ServiceProcess, connection_id: str) -> Connection:
    return connection_row(service, connection_id)


# --- api_key ------------------------------------------------------------------------------------


def test_an_api_key_is_proved_sealed_and_handed_to_the_tool(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess, credentials_api: CredentialsApi
) -> None:
    key = credentials_api.api_key
    response = submit(api, tenant, KEY_API, {"api_key": key}, name="Work key")
    assert response.status_code == 201, response.text
    assert key not in response.text
    connection = response.json()
    assert connection["app_key"] == KEY_API and connection["auth_mode"] == "api_key"
    assert connection["account_id"] == "acct-key-1"  # from the entry's userinfo call
    assert connection["account_email"] == "acct-key-1@keyapi.example"
    assert connection["credential_fields"] == ["api_key"]
    assert connection["credential_name"] == "Work key"
    assert connection["status"] == "active" and connection["scopes"] == []
    connection_id = connection["id"]

    # Lists show the field names only; the row holds the key sealed, never in clear.
    [item] = listed(api, tenant, KEY_API)
    assert item["id"] == connection_id and item["credential_fields"] == ["api_key"]
    row = stored_row(service, connection_id)
    assert row.credentials_ct is not None and key.encode() not in row.credentials_ct
    assert row.access_token_ct is None and row.refresh_token_ct is None
    one = api.get(f"/{connection_id}", params=tenant.org, headers=tenant.headers)
    assert one.status_code == 200 and key not in one.text

    handed = token(api, tenant, connection_id)
    assert handed.status_code == 200, handed.text
    body = handed.json()
    assert body["auth_mode"] == "api_key" and body["access_token"] is None
    assert body["token_type"] is None and body["credentials"] == {"api_key": key}
    assert event_types(service, connection_id) == ["connection.created"]


def test_a_refused_key_is_credentials_rejected_and_nothing_is_stored(
    api: httpx.Client, tenant: Tenant, credentials_api: CredentialsApi
) -> None:
    wrong = "kk_" + "x" * 30  # the right shape, unknown to the provider
    refused = error(submit(api, tenant, KEY_API, {"api_key": wrong}), 400, "CREDENTIALS_REJECTED")
    assert wrong not in str(refused)
    assert listed(api, tenant, KEY_API) == []


def test_a_provider_that_cannot_answer_is_a_503_to_try_again_and_nothing_is_stored(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess, credentials_api: CredentialsApi
) -> None:
    offset = len(service.logs())
    fields = {"app_id": credentials_api.client_id, "app_secret": credentials_api.client_secret}
    with credentials_api.down(503):
        minted = submit(api, tenant, CC_API, fields)  # the token endpoint answers 503
        checked = submit(api, tenant, KEY_API, {"api_key": credentials_api.api_key})  # /me does
    for response in (minted, checked):
        error(response, 503, "PROVIDER_UNAVAILABLE")
        assert response.headers["Retry-After"] == "30"
    assert "try again" in minted.json()["error"]["system_message"]
    assert credentials_api.client_secret not in minted.text
    assert listed(api, tenant, CC_API) == [] and listed(api, tenant, KEY_API) == []
    # The operator's log says why (the provider's status), the caller's answer says what to do.
    logs = service.logs()[offset:]
    assert (
        f"credentials for {CC_API}: the token endpoint failed (provider unreachable: HTTP 503)"
        in logs
    )
    assert f"credentials for {KEY_API}: the check call answered 503" in logs
    for secret in (credentials_api.client_secret, credentials_api.api_key):
        assert secret not in logs


def test_bad_fields_are_named_and_never_echoed(api: httpx.Client, tenant: Tenant) -> None:
    secret = "not-a-key-value-0123456789"
    missing = error(submit(api, tenant, KEY_API, {}), 400, "VALIDATION_ERROR")
    assert missing["details"]["fields"] == ["credentials.api_key"]
    malformed = error(
        submit(api, tenant, KEY_API, {"api_key": secret, "extra": "x"}), 400, "VALIDATION_ERROR"
    )
    assert malformed["details"]["fields"] == ["credentials.api_key", "credentials.extra"]
    assert secret not in str(malformed)
    wrong_type = error(submit(api, tenant, KEY_API, {"api_key": 12345}), 400, "VALIDATION_ERROR")
    assert wrong_type["details"]["fields"] == ["credentials.api_key"]
    assert listed(api, tenant, KEY_API) == []


def test_the_same_account_again_updates_its_connection_and_put_rotates_the_key(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess, credentials_api: CredentialsApi
) -> None:
    first = submit(api, tenant, KEY_API, {"api_key": credentials_api.api_key})
    assert first.status_code == 201, first.text
    connection_id = first.json()["id"]
    second_key = credentials_api.add_api_key("acct-key-1")  # another key of the same account
    again = submit(api, tenant, KEY_API, {"api_key": second_key})
    assert again.status_code == 200, again.text
    assert again.json()["id"] == connection_id and len(listed(api, tenant, KEY_API)) == 1
    assert token(api, tenant, connection_id).json()["credentials"] == {"api_key": second_key}

    # PUT: a rotated key, proved the same way; a refused one changes nothing.
    rotated = credentials_api.add_api_key("acct-key-1")
    response = replace(api, tenant, connection_id, {"api_key": rotated})
    assert response.status_code == 200, response.text
    assert response.json()["id"] == connection_id and rotated not in response.text
    assert token(api, tenant, connection_id).json()["credentials"] == {"api_key": rotated}
    error(
        replace(api, tenant, connection_id, {"api_key": "kk_" + "y" * 30}),
        400,
        "CREDENTIALS_REJECTED",
    )
    assert token(api, tenant, connection_id).json()["credentials"] == {"api_key": rotated}
    # Another account's key is not a rotation of this one.
    stranger = credentials_api.add_api_key("acct-other")
    error(replace(api, tenant, connection_id, {"api_key": stranger}), 400, "VALIDATION_ERROR")
    assert event_types(service, connection_id) == [
        "connection.created",
        "connection.reauthorized",
        "connection.reauthorized",
    ]


# --- basic -------------------------------------------------------------------------------------


def test_basic_credentials_without_an_identity_call_are_named_by_a_digest(
    api: httpx.Client, tenant: Tenant, credentials_api: CredentialsApi
) -> None:
    fields = {"email": EMAIL, "api_token": credentials_api.api_token}
    first = submit(api, tenant, BASIC_API, fields)
    assert first.status_code == 201, first.text
    connection = first.json()
    assert connection["account_id"].startswith("cred_")
    assert EMAIL not in connection["account_id"] and credentials_api.api_token not in first.text
    assert connection["credential_fields"] == ["api_token", "email"]
    again = submit(api, tenant, BASIC_API, fields)
    assert again.status_code == 200 and again.json()["id"] == connection["id"]
    body = token(api, tenant, connection["id"]).json()
    assert body["auth_mode"] == "basic" and body["access_token"] is None
    assert body["credentials"] == fields
    wrong = {"email": EMAIL, "api_token": "not-the-token-0123456789"}
    error(submit(api, tenant, BASIC_API, wrong), 400, "CREDENTIALS_REJECTED")


# --- oauth2_client_credentials -----------------------------------------------------------------


def test_client_credentials_mint_a_token_and_mint_again_when_due(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess, credentials_api: CredentialsApi
) -> None:
    fields = {"app_id": credentials_api.client_id, "app_secret": credentials_api.client_secret}
    minted_before = credentials_api.mints["client_credentials"]
    response = submit(api, tenant, CC_API, fields)
    assert response.status_code == 201, response.text
    connection = response.json()
    assert connection["auth_mode"] == "oauth2_client_credentials"
    assert connection["scopes"] == ["read"] and connection["expires_at"] is not None
    assert credentials_api.mints["client_credentials"] == minted_before + 1
    connection_id = connection["id"]

    first = token(api, tenant, connection_id)
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["auth_mode"] == "oauth2_client_credentials" and body["credentials"] is None
    assert credentials_api.minted[body["access_token"]] == "acct-client"
    assert body["token_type"] == "Bearer"
    assert credentials_api.client_secret not in first.text

    # Due (30 s left of an hour): minted again under the refresh machinery, stored, handed out.
    now = utcnow()
    update_connection(
        service,
        connection_id,
        token_issued_at=now - timedelta(hours=1),
        expires_at=now + timedelta(seconds=30),
    )
    second = token(api, tenant, connection_id).json()
    assert second["access_token"] != body["access_token"]
    assert credentials_api.minted[second["access_token"]] == "acct-client"
    assert credentials_api.mints["client_credentials"] == minted_before + 2
    forced = token(api, tenant, connection_id, force_refresh="true").json()
    assert forced["access_token"] not in (body["access_token"], second["access_token"])
    assert event_types(service, connection_id).count("connection.refreshed") == 2
    # The credentials still open after the rewrites (sealed again with each token).
    assert token(api, tenant, connection_id).json()["access_token"] == forced["access_token"]

    wrong = {**fields, "app_secret": "not-the-secret-0123456789"}
    refused = error(submit(api, tenant, CC_API, wrong), 400, "CREDENTIALS_REJECTED")
    assert refused["details"]["error"] == "invalid_client"


# --- jwt_bearer --------------------------------------------------------------------------------


def test_a_jwt_bearer_key_signs_assertions_the_provider_verifies(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess, credentials_api: CredentialsApi
) -> None:
    fields = {"client_email": SERVICE_ACCOUNT, "private_key": credentials_api.private_key}
    response = submit(api, tenant, JWT_API, fields)
    assert response.status_code == 201, response.text
    connection = response.json()
    assert connection["account_id"] == "acct-robot"  # userinfo with the minted token
    assert connection["auth_mode"] == "jwt_bearer"
    body = token(api, tenant, connection["id"], force_refresh="true").json()
    assert body["credentials"] is None and body["auth_mode"] == "jwt_bearer"
    assert credentials_api.minted[body["access_token"]] == "acct-robot"
    assert "PRIVATE KEY" not in str(body) and "PRIVATE KEY" not in response.text

    not_a_key = {
        **fields,
        "private_key": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----",
    }
    bad = error(submit(api, tenant, JWT_API, not_a_key), 400, "VALIDATION_ERROR")
    assert bad["details"]["fields"] == ["credentials.private_key"]
    # The provider verifies iss: another account's name with this key is refused.
    other = {**fields, "client_email": "someone@jwtapi.example"}
    refused = error(submit(api, tenant, JWT_API, other), 400, "CREDENTIALS_REJECTED")
    assert refused["details"]["error"] == "invalid_grant"


# --- who may do what ---------------------------------------------------------------------------


def test_an_end_user_never_reaches_another_end_users_credentials(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess, credentials_api: CredentialsApi
) -> None:
    key = make_organization_key(service, tenant.organization_id)
    alice, bob = key.acting_for("alice"), key.acting_for("bob")
    # A refused submission creates nothing, not even the end user it names.
    carol = key.acting_for("carol")
    error(submit(api, carol, KEY_API, {"api_key": "kk_" + "c" * 30}), 400, "CREDENTIALS_REJECTED")
    unknown = api.get("/end-users/carol", params=key.org, headers=key.headers)
    error(unknown, 404, "RESOURCE_NOT_FOUND")
    response = submit(api, alice, KEY_API, {"api_key": credentials_api.api_key})
    assert response.status_code == 201, response.text
    connection = response.json()
    assert connection["end_user_id"] == "alice"
    assert token(api, alice, connection["id"]).json()["credentials"]
    error(token(api, bob, connection["id"]), 404, "RESOURCE_NOT_FOUND")
    error(
        replace(api, bob, connection["id"], {"api_key": credentials_api.api_key}),
        404,
        "RESOURCE_NOT_FOUND",
    )
    assert listed(api, bob, KEY_API) == []
    # The tenant's own user key does not see the end user's connection either.
    error(token(api, tenant, connection["id"]), 404, "RESOURCE_NOT_FOUND")
    # A service key names its end user on this write route as on every other.
    no_end_user = api.post(
        "/credentials",
        params=key.org,
        headers=key.headers,
        json={"connector_type": KEY_API, "credentials": {"api_key": credentials_api.api_key}},
    )
    error(no_end_user, 400, "VALIDATION_ERROR")


def test_oauth_and_credentials_routes_point_at_each_other(
    api: httpx.Client, tenant: Tenant, credentials_api: CredentialsApi
) -> None:
    authorize = api.post(
        "/authorize", params=tenant.org, headers=tenant.headers, json={"connector_type": KEY_API}
    )
    body = error(authorize, 400, "VALIDATION_ERROR")
    assert "POST /v1/personal-connectors/credentials" in body["system_message"]
    assert f"GET /available/{KEY_API} names them" in body["system_message"]
    oauth = error(submit(api, tenant, PROVIDER_KEY, {"x": "y"}), 400, "VALIDATION_ERROR")
    assert "/authorize" in oauth["system_message"]
    unknown = error(submit(api, tenant, "no-such-thing", {}), 400, "VALIDATION_ERROR")
    assert unknown["details"]["fields"] == ["connector_type"]
    available = api.get(f"/available/{KEY_API}", params=tenant.org, headers=tenant.headers).json()
    assert available["auth_mode"] == "api_key" and available["configured"] is True
    assert [f["name"] for f in available["credentials"]] == ["api_key"]


def test_no_credential_reaches_the_logs(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess, credentials_api: CredentialsApi
) -> None:
    offset = len(service.logs())
    key = credentials_api.api_key
    connection_id = submit(api, tenant, KEY_API, {"api_key": key}).json()["id"]
    token(api, tenant, connection_id)
    submit(api, tenant, KEY_API, {"api_key": "kk_" + "z" * 30})  # refused
    fields = {"app_id": credentials_api.client_id, "app_secret": credentials_api.client_secret}
    cc_id = submit(api, tenant, CC_API, fields).json()["id"]
    token(api, tenant, cc_id, force_refresh="true")
    jwt_fields = {"client_email": SERVICE_ACCOUNT, "private_key": credentials_api.private_key}
    submit(api, tenant, JWT_API, jwt_fields)
    api.delete(f"/{connection_id}", headers=tenant.headers)
    logs = service.logs()[offset:]
    assert connection_id in logs  # the lines were written
    key_lines = [line for line in credentials_api.private_key.splitlines() if "-----" not in line]
    for secret in (key, credentials_api.client_secret, *key_lines):
        assert secret not in logs
    assert not any(token in logs for token in credentials_api.minted)


def test_the_check_call_uses_the_stored_credentials(
    api: httpx.Client, tenant: Tenant, credentials_api: CredentialsApi
) -> None:
    key = credentials_api.add_api_key("acct-checked")
    connection_id = submit(api, tenant, KEY_API, {"api_key": key}).json()["id"]

    def check() -> dict[str, Any]:
        response = api.post(f"/{connection_id}/test", params=tenant.org, headers=tenant.headers)
        assert response.status_code == 200, response.text
        assert key not in response.text
        return dict(response.json())

    assert check()["success"] is True
    credentials_api.revoke_api_key(key)  # revoked by the user at the provider
    failed = check()
    assert failed["success"] is False and "refused (HTTP 401)" in failed["message"]
    health = api.get(f"/{connection_id}/health", params=tenant.org, headers=tenant.headers)
    assert health.json()["status"] == "unhealthy"
    fields = {"app_id": credentials_api.client_id, "app_secret": credentials_api.client_secret}
    minting = submit(api, tenant, CC_API, fields).json()["id"]
    checked = api.post(f"/{minting}/test", params=tenant.org, headers=tenant.headers)
    assert checked.json()["success"] is True


def test_the_background_refresher_mints_due_tokens_again(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess, credentials_api: CredentialsApi
) -> None:
    fields = {"app_id": credentials_api.client_id, "app_secret": credentials_api.client_secret}
    connection_id = submit(api, tenant, CC_API, fields).json()["id"]
    key_id = submit(api, tenant, KEY_API, {"api_key": credentials_api.api_key}).json()["id"]
    before = credentials_api.mints["client_credentials"]
    now = utcnow()
    update_connection(  # expiring within the refresher's window, past its half-life
        service,
        connection_id,
        token_issued_at=now - timedelta(hours=1),
        expires_at=now + timedelta(seconds=60),
        refresh_due_at=None,
    )
    counts = run_refresher_once(service, tenant.organization_id)
    assert counts["refreshed"] == 1, counts
    assert credentials_api.mints["client_credentials"] == before + 1
    assert event_types(service, connection_id)[-1] == "connection.refreshed"
    assert stored_row(service, connection_id).status == "active"
    assert event_types(service, key_id) == ["connection.created"]  # an API key is never due


def test_the_proxy_sends_the_stored_credentials_as_the_entry_declares(
    api: httpx.Client, tenant: Tenant, credentials_api: CredentialsApi
) -> None:
    """SPEC §9/§10: the proxy fills ``api_auth`` from the connection's sealed fields — a bearer
    header for the API key, HTTP Basic for the e-mail and API token."""
    key = credentials_api.add_api_key("acct-proxied")
    keyed = submit(api, tenant, KEY_API, {"api_key": key})
    assert keyed.status_code == 201, keyed.text
    basic = submit(api, tenant, BASIC_API, {"email": EMAIL, "api_token": credentials_api.api_token})
    assert basic.status_code in (200, 201), basic.text
    for connection_id, account in (
        (keyed.json()["id"], "acct-proxied"),
        (basic.json()["id"], "acct-basic"),
    ):
        proxied = api.get(f"/{connection_id}/proxy/me", params=tenant.org, headers=tenant.headers)
        assert proxied.status_code == 200, proxied.text
        assert proxied.headers["X-Connectors-Proxy"] == "upstream"
        assert proxied.json()["id"] == account
    # A key the provider no longer takes: its 401 comes back as the provider's (nothing to refresh).
    credentials_api.revoke_api_key(key)
    refused = api.get(f"/{keyed.json()['id']}/proxy/me", params=tenant.org, headers=tenant.headers)
    assert refused.status_code == 401 and refused.headers["X-Connectors-Proxy"] == "upstream"
