"""Health and checks (SPEC §3.2 `/{id}/health`, `/{id}/test`, `GET /?forceCheck=true`) against
the real provider: a working token, one revoked at the provider, a provider that is down."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from urllib.parse import quote

import httpx
import pytest

from personal_connectors.models import ConnectionStatus
from tests.conftest import CLIENT_ID, CLIENT_SECRET, FAULTY_KEY, Tenant
from tests.flows.conftest import authorize_and_consent, connect, follow_callback
from tests.support import web
from tests.support.db import connection_row, set_expiry, stored_tokens, update_connection
from tests.support.fault_proxy import FaultProxy
from tests.support.oidc import OidcProvider, token_request
from tests.support.service import ServiceProcess


def health(api: httpx.Client, tenant: Tenant, connection_id: str) -> dict[str, object]:
    response = api.get(f"/{connection_id}/health", params=tenant.org, headers=tenant.headers)
    assert response.status_code == 200, response.text
    return dict(response.json())


def run_test(api: httpx.Client, tenant: Tenant, connection_id: str) -> dict[str, object]:
    response = api.post(f"/{connection_id}/test", params=tenant.org, headers=tenant.headers)
    assert response.status_code == 200, response.text
    return dict(response.json())


def listed(api: httpx.Client, tenant: Tenant, **query: str) -> dict[str, dict[str, object]]:
    response = api.get("", params={**tenant.org, **query}, headers=tenant.headers)
    assert response.status_code == 200, response.text
    return {item["id"]: item for item in response.json()}


def revoke_at_provider(oidc: OidcProvider, token: str, hint: str) -> None:
    """RFC 7009 at the provider, as another client of the account could have done."""
    revoked = web.post(
        oidc.metadata["revocation_endpoint"],
        data={"token": token, "token_type_hint": hint},
        auth=(quote(CLIENT_ID, safe=""), quote(CLIENT_SECRET, safe="")),
        timeout=10,
    )
    assert revoked.status_code == 200


def revoke_access_token(oidc: OidcProvider, access_token: str) -> None:
    """Revoke, then prove that the provider no longer accepts the token."""
    revoke_at_provider(oidc, access_token, "access_token")
    userinfo = web.get(
        oidc.metadata["userinfo_endpoint"],
        headers={"Authorization": f"Bearer {access_token}"},
        timeout=10,
    )
    assert userinfo.status_code == 401


def at(value: object) -> datetime:
    assert isinstance(value, str)
    return datetime.fromisoformat(value)


@pytest.fixture
def proxy(fault_proxy: FaultProxy) -> Iterator[FaultProxy]:
    fault_proxy.set_mode("pass")
    yield fault_proxy
    fault_proxy.set_mode("pass")


def test_health_is_unknown_until_a_test_succeeds_then_healthy(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess
) -> None:
    connection_id = connect(api, tenant)
    assert health(api, tenant, connection_id) == {
        "credential_id": connection_id,
        "tool_key": "local-oidc",
        "status": "unknown",
        "is_active": True,
        "connection_status": "active",
        "reason": None,
        "last_checked_at": None,
    }
    synced_at_connect = at(listed(api, tenant)[connection_id]["last_sync_at"])

    result = run_test(api, tenant, connection_id)
    assert set(result) == {
        "credential_id",
        "tool_key",
        "success",
        "action_tested",
        "message",
        "execution_time_ms",
        "tested_at",
    }
    assert result["credential_id"] == connection_id and result["tool_key"] == "local-oidc"
    assert result["success"] is True and result["action_tested"] == "read_identity"
    assert result["message"] == "Operation completed successfully"
    assert isinstance(result["execution_time_ms"], int) and result["execution_time_ms"] >= 0
    access_token, refresh_token = stored_tokens(service, connection_id)
    assert access_token and access_token not in str(result)

    after = health(api, tenant, connection_id)
    assert after["status"] == "healthy" and after["reason"] is None
    assert at(after["last_checked_at"]) == at(result["tested_at"])
    synced = at(listed(api, tenant)[connection_id]["last_sync_at"])
    assert synced == at(result["tested_at"]) and synced > synced_at_connect
    assert stored_tokens(service, connection_id) == (access_token, refresh_token)


def test_a_token_revoked_at_the_provider_fails_the_test_and_makes_it_unhealthy(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess, oidc: OidcProvider
) -> None:
    connection_id = connect(api, tenant)
    assert run_test(api, tenant, connection_id)["success"] is True
    synced = at(listed(api, tenant)[connection_id]["last_sync_at"])
    access_token, _ = stored_tokens(service, connection_id)
    assert access_token
    revoke_access_token(oidc, access_token)

    result = run_test(api, tenant, connection_id)
    assert result["success"] is False
    assert result["message"] == "Local OIDC: identity call answered 401"
    assert access_token not in str(result)
    after = health(api, tenant, connection_id)
    assert after["status"] == "unhealthy" and after["reason"] == result["message"]
    assert after["connection_status"] == "active"  # the refresh token may still be good
    assert at(after["last_checked_at"]) == at(result["tested_at"])
    assert at(listed(api, tenant)[connection_id]["last_sync_at"]) == synced  # no success


def test_a_provider_that_is_down_is_a_failed_test_not_an_error(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess, proxy: FaultProxy
) -> None:
    flow = authorize_and_consent(api, tenant, connector_type=FAULTY_KEY)
    connection_id = str(follow_callback(flow.callback_url).json()["data"]["connection_id"])
    assert run_test(api, tenant, connection_id)["success"] is True

    for fault in ("status:503", "drop", "delay:4"):  # the services' provider timeout is 2 s
        proxy.set_mode(fault)
        result = run_test(api, tenant, connection_id)
        assert result["success"] is False, fault
        assert result["message"].startswith("Faulty OIDC"), result["message"]
        assert int(str(result["execution_time_ms"])) < 3500
        after = health(api, tenant, connection_id)
        assert (after["status"], after["reason"]) == ("unhealthy", result["message"])

    proxy.set_mode("pass")
    assert run_test(api, tenant, connection_id)["success"] is True
    assert health(api, tenant, connection_id)["status"] == "healthy"
    assert connection_row(service, connection_id).status == "active"


def test_a_connection_that_needs_reauthorization_is_unhealthy_with_its_reason(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess
) -> None:
    connection_id = connect(api, tenant)
    reason = "invalid_grant: grant request is invalid"
    update_connection(
        service, connection_id, status=ConnectionStatus.NEEDS_REAUTH, status_reason=reason
    )
    expected = {"status": "unhealthy", "reason": reason, "connection_status": "needs_reauth"}
    assert {k: health(api, tenant, connection_id)[k] for k in expected} == expected

    result = run_test(api, tenant, connection_id)
    assert result["success"] is False and result["execution_time_ms"] is None
    assert result["message"] == "The connected account must be connected again."
    after = health(api, tenant, connection_id)
    assert {k: after[k] for k in expected} == expected  # the refresh's reason is kept
    assert at(after["last_checked_at"]) == at(result["tested_at"])


def test_an_expired_token_is_refreshed_before_the_test(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess
) -> None:
    connection_id = connect(api, tenant)
    old_access, old_refresh = stored_tokens(service, connection_id)
    set_expiry(service, connection_id, -5)
    assert run_test(api, tenant, connection_id)["success"] is True
    new_access, new_refresh = stored_tokens(service, connection_id)
    assert new_access != old_access and new_refresh != old_refresh  # rotated, via the refresh
    assert health(api, tenant, connection_id)["status"] == "healthy"


def test_a_refresh_rejected_during_the_test_keeps_the_providers_reason(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess, oidc: OidcProvider
) -> None:
    connection_id = connect(api, tenant)
    _, refresh_token = stored_tokens(service, connection_id)
    assert refresh_token
    revoke_at_provider(oidc, refresh_token, "refresh_token")
    refused = token_request(
        oidc,
        CLIENT_ID,
        CLIENT_SECRET,
        {"grant_type": "refresh_token", "refresh_token": refresh_token},
    )
    assert refused.json()["error"] == "invalid_grant"
    set_expiry(service, connection_id, -5)

    result = run_test(api, tenant, connection_id)
    assert result["success"] is False
    assert result["message"] == "The connected account must be connected again."
    after = health(api, tenant, connection_id)
    assert (after["status"], after["connection_status"]) == ("unhealthy", "needs_reauth")
    assert str(after["reason"]).startswith("invalid_grant")  # the refresh's, not the test's


def test_a_disabled_connection_can_still_be_tested(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess
) -> None:
    connection_id = connect(api, tenant)
    api.patch(
        f"/connections/{connection_id}/active",
        params=tenant.org,
        headers=tenant.headers,
        json={"is_active": False},
    )
    assert run_test(api, tenant, connection_id)["success"] is True
    after = health(api, tenant, connection_id)
    assert (after["status"], after["is_active"]) == ("healthy", False)
    assert connection_row(service, connection_id).is_active is False


def test_force_check_checks_every_listed_connection_before_answering(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess, oidc: OidcProvider
) -> None:
    alice = connect(api, tenant, login="alice")
    bob = connect(api, tenant, login="bob")
    before = listed(api, tenant)
    assert {health(api, tenant, c)["status"] for c in (alice, bob)} == {"unknown"}
    bob_token, _ = stored_tokens(service, bob)
    assert bob_token
    revoke_access_token(oidc, bob_token)

    checked = listed(api, tenant, forceCheck="true")
    assert set(checked) == {alice, bob}
    assert at(checked[alice]["last_sync_at"]) > at(before[alice]["last_sync_at"])
    assert checked[bob]["last_sync_at"] == before[bob]["last_sync_at"]
    assert health(api, tenant, alice)["status"] == "healthy"
    bob_health = health(api, tenant, bob)
    assert bob_health["status"] == "unhealthy" and "401" in str(bob_health["reason"])
    assert bob_token not in str(checked) and bob_token not in str(bob_health)


def test_force_check_is_false_by_default_and_follows_the_filters(
    api: httpx.Client, tenant: Tenant
) -> None:
    connection_id = connect(api, tenant)
    listed(api, tenant)
    listed(api, tenant, forceCheck="false")
    listed(api, tenant, forceCheck="true", app_key="github")  # filtered out: not checked
    assert health(api, tenant, connection_id)["last_checked_at"] is None
    listed(api, tenant, forceCheck="true", app_key="local-oidc")
    assert health(api, tenant, connection_id)["status"] == "healthy"
    bad = api.get("", params={**tenant.org, "forceCheck": "maybe"}, headers=tenant.headers)
    assert bad.status_code == 400 and bad.json()["error"]["details"]["fields"] == ["forceCheck"]


def test_force_check_asks_stalled_providers_side_by_side_within_the_timeout(
    api: httpx.Client, tenant: Tenant, proxy: FaultProxy
) -> None:
    stalled = []
    for login in ("alice", "bob", "carol"):
        flow = authorize_and_consent(api, tenant, login=login, connector_type=FAULTY_KEY)
        stalled.append(str(follow_callback(flow.callback_url).json()["data"]["connection_id"]))
    proxy.set_mode("delay:4")

    started = time.monotonic()
    checked = listed(api, tenant, forceCheck="true")
    elapsed = time.monotonic() - started
    assert set(checked) == set(stalled)
    assert elapsed < 3.6, elapsed  # one 2 s provider timeout, not three in a row
    for connection_id in stalled:
        after = health(api, tenant, connection_id)
        assert after["status"] == "unhealthy"
        assert after["reason"] == "Faulty OIDC did not answer within 2s."
