"""No refresh token lost to a slow provider, checked at the provider itself.

Both test providers rotate refresh tokens with reuse detection: a rotated refresh token presented
again revokes the whole grant. So a refresh whose answer the service abandoned, followed by a
retry with the old refresh token, kills the connection at the provider while the database still
looks fine. Every fault here is therefore followed by a token call whose token the provider must
accept (its userinfo answers), or by an explicit ``needs_reauth`` with ``rotation_lost``.

The suite's service waits 3 s for a refresh (``CONNECTORS_REFRESH_WAIT_SECONDS``) and lets the
request to the provider take 10 s (``CONNECTORS_REFRESH_REQUEST_SECONDS``).
"""

from __future__ import annotations

import time

import httpx
import pytest

from tests.conftest import FAULTY_KEY, Tenant
from tests.support.db import connection_row, event_types, set_expiry, stored_tokens
from tests.support.fake_provider import FakeProvider
from tests.support.fault_proxy import FaultProxy
from tests.support.oidc import OidcProvider
from tests.support.service import ServiceProcess
from tests.tokens.conftest import (
    TOKEN_PATH,
    connect_accounts,
    connect_fake,
    run_refresher_once,
    set_due,
    token,
    wait_for,
    works_at_oidc,
)

# The provider answers after the caller's wait budget (3 s), inside the request lifetime (10 s).
SLOW = "delay:6"


def assert_rotation_lost(service: ServiceProcess, connection_id: str) -> None:
    row = connection_row(service, connection_id)
    assert row.status == "needs_reauth", row.status
    assert (row.status_reason or "").startswith("rotation_lost"), row.status_reason
    assert event_types(service, connection_id)[-1] == "connection.rotation_lost"


@pytest.mark.parametrize("seconds_left", [60, -5], ids=["still-valid", "expired"])
def test_a_refresh_slower_than_the_callers_wait_is_stored_and_works_at_the_provider(
    api: httpx.Client,
    tenant: Tenant,
    service: ServiceProcess,
    proxy: FaultProxy,
    oidc: OidcProvider,
    seconds_left: int,
) -> None:
    [cid] = connect_accounts(api, tenant, 1, connector_type=FAULTY_KEY)
    access, _ = stored_tokens(service, cid)
    set_expiry(service, cid, seconds_left)
    proxy.set_mode(SLOW)
    before = proxy.count(TOKEN_PATH)

    started = time.monotonic()
    response = token(api, tenant, cid)
    assert time.monotonic() - started < 5.5  # the caller did not wait for the provider
    if seconds_left > 0:
        assert response.status_code == 200 and response.json()["access_token"] == access
    else:
        assert response.status_code == 503, response.text
        assert response.json()["error"]["code"] == "PROVIDER_UNAVAILABLE"
        assert int(response.headers["retry-after"]) >= 1

    # The request went on without its caller; its answer (the rotated token) is stored.
    wait_for(lambda: connection_row(service, cid).version == 2, what="the late answer stored")
    assert proxy.count(TOKEN_PATH) - before == 1  # sent once: never resent while in flight
    proxy.set_mode("pass")
    fresh = token(api, tenant, cid)
    assert fresh.status_code == 200 and fresh.json()["access_token"] != access
    assert works_at_oidc(oidc, fresh.json()["access_token"])
    # And the stored refresh token is the live one at the provider.
    forced = token(api, tenant, cid, force_refresh="true")
    assert forced.status_code == 200, forced.text
    assert works_at_oidc(oidc, forced.json()["access_token"])
    row = connection_row(service, cid)
    assert (row.status, row.rotation_uncertain_since) == ("active", None)


def test_a_reset_after_the_provider_rotated_is_rotation_lost_never_a_silent_loop(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess, proxy: FaultProxy
) -> None:
    [cid] = connect_accounts(api, tenant, 1, connector_type=FAULTY_KEY)
    access, _ = stored_tokens(service, cid)
    set_expiry(service, cid, 60)
    proxy.set_mode("reset-after")
    answered = proxy.forwarded(TOKEN_PATH)

    response = token(api, tenant, cid)
    assert response.status_code == 200 and response.json()["access_token"] == access

    # Processed, answer lost, sent again once (processed, lost too), then given up for now:
    # the row says its rotation is in doubt.
    def concluded() -> bool:
        row = connection_row(service, cid)
        return row.refresh_lease_owner is None and row.rotation_uncertain_since is not None

    wait_for(concluded, what="the attempt concluded as uncertain")
    assert proxy.forwarded(TOKEN_PATH) - answered == 2
    assert connection_row(service, cid).status == "active"  # a valid token is still served

    # The next refresh hears the provider's verdict: the token it has was rotated away.
    proxy.set_mode("pass")
    again = token(api, tenant, cid, force_refresh="true")
    assert again.status_code == 409, again.text
    assert again.json()["error"]["code"] == "REAUTHORIZATION_REQUIRED"
    assert "rotation_lost" in again.json()["error"]["system_message"]
    assert_rotation_lost(service, cid)


def test_the_refresher_under_a_slow_provider_stores_the_late_answer(
    api: httpx.Client,
    tenant: Tenant,
    service: ServiceProcess,
    proxy: FaultProxy,
    oidc: OidcProvider,
) -> None:
    [cid] = connect_accounts(api, tenant, 1, connector_type=FAULTY_KEY)
    set_due(service, [cid], 200)
    proxy.set_mode(SLOW)
    before = proxy.count(TOKEN_PATH)

    counts = run_refresher_once(service, tenant.organization_id)

    assert counts["refreshed"] == 1 and proxy.count(TOKEN_PATH) - before == 1
    proxy.set_mode("pass")
    forced = token(api, tenant, cid, force_refresh="true")
    assert forced.status_code == 200, forced.text
    assert works_at_oidc(oidc, forced.json()["access_token"])


def test_the_refresher_under_a_reset_marks_rotation_lost(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess, proxy: FaultProxy
) -> None:
    [cid] = connect_accounts(api, tenant, 1, connector_type=FAULTY_KEY)
    set_due(service, [cid], 200)
    proxy.set_mode("reset-after", times=1)  # the resend reaches the provider and its answer

    counts = run_refresher_once(service, tenant.organization_id)

    assert counts["needs_reauth"] == 1, counts
    assert_rotation_lost(service, cid)
    refused = token(api, tenant, cid)
    assert (
        refused.status_code == 409 and "rotation_lost" in refused.json()["error"]["system_message"]
    )


@pytest.mark.parametrize(
    ("connector_type", "outcome"),
    [("fake-rotating-grace", "works"), ("fake-rotating", "rotation_lost")],
    ids=["grace-period", "no-grace-period"],
)
def test_a_lost_answer_is_retried_with_the_same_token_only_inside_a_grace_period(
    api: httpx.Client,
    tenant: Tenant,
    service: ServiceProcess,
    fake_provider: FakeProvider,
    connector_type: str,
    outcome: str,
) -> None:
    profile = connector_type.removeprefix("fake-")
    cid = connect_fake(api, tenant, connector_type)
    access, _ = stored_tokens(service, cid)
    set_expiry(service, cid, 60)
    fake_provider.cut_refreshes(1)
    before = fake_provider.refreshes[profile]

    response = token(api, tenant, cid)  # the current token, or the refreshed one
    assert response.status_code in (200, 409), response.text

    def concluded() -> bool:
        row = connection_row(service, cid)
        return row.version == 2 or row.status == "needs_reauth"

    wait_for(concluded, what="the refresh concluded")
    if outcome == "works":
        # Rotated, answer lost; the same refresh token again inside the grace period: rotated
        # again, and this answer arrives.
        assert fake_provider.refreshes[profile] - before == 2
        fresh = token(api, tenant, cid)
        assert fresh.status_code == 200, fresh.text
        issued = fresh.json()["access_token"]
        assert issued != access
        assert fake_provider.is_live(issued) and fake_provider.grant_alive(issued)
        forced = token(api, tenant, cid, force_refresh="true")
        assert forced.status_code == 200 and fake_provider.is_live(forced.json()["access_token"])
        assert connection_row(service, cid).rotation_uncertain_since is None
    else:
        # Sent once more (no grace period): reuse detected, the grant is gone; said so.
        assert fake_provider.refreshes[profile] - before == 1
        assert not fake_provider.grant_alive(access)
        assert_rotation_lost(service, cid)
        refused = token(api, tenant, cid)
        assert (
            refused.status_code == 409
            and "rotation_lost" in refused.json()["error"]["system_message"]
        )
