"""What the background refresher takes up, and when: a passing fault backs off instead of
hammering the provider and recovers later; a disabled connection waits for the daily idle
refresh; an expired token with nothing to refresh it is flagged at once, not at first use."""

from __future__ import annotations

from datetime import timedelta

import httpx

from personal_connectors.models import utcnow
from personal_connectors.refresher.repository import FIRST_BACKOFF_SECONDS
from tests.conftest import FAULTY_KEY, Tenant
from tests.support.db import connection_row, event_types, stored_tokens, update_connection
from tests.support.fault_proxy import FaultProxy
from tests.support.service import ServiceProcess
from tests.tokens.conftest import TOKEN_PATH, connect_accounts, run_refresher_once, set_due, states


def test_a_passing_fault_backs_off_then_the_refresh_recovers(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess, proxy: FaultProxy
) -> None:
    [connection_id] = connect_accounts(api, tenant, 1, connector_type=FAULTY_KEY)
    tokens = stored_tokens(service, connection_id)
    set_due(service, [connection_id], 200)
    proxy.set_mode("status:503")
    before = proxy.count(TOKEN_PATH)

    run_refresher_once(service, tenant.organization_id)

    assert proxy.count(TOKEN_PATH) > before  # it tried (and retried inside its budget)
    row = connection_row(service, connection_id)
    assert (row.status, row.refresh_failures, row.refresh_lease_owner) == ("active", 1, None)
    assert stored_tokens(service, connection_id) == tokens
    assert event_types(service, connection_id)[-1] == "connection.refresh_failed"

    # Inside the backoff another run leaves the provider alone.
    tried = proxy.count(TOKEN_PATH)
    run_refresher_once(service, tenant.organization_id)
    assert proxy.count(TOKEN_PATH) == tried
    assert connection_row(service, connection_id).refresh_failures == 1

    # Once the backoff has passed (the last failure moved back past it) and the provider is
    # back, the next run refreshes and records the recovery.
    proxy.set_mode("pass")
    failed_at = utcnow() - timedelta(seconds=FIRST_BACKOFF_SECONDS + 1)
    update_connection(service, connection_id, updated_at=failed_at)
    counts = run_refresher_once(service, tenant.organization_id)

    assert counts["refreshed"] == 1
    row = connection_row(service, connection_id)
    assert (row.status, row.refresh_failures, row.version) == ("active", 0, 2)
    assert stored_tokens(service, connection_id)[0] != tokens[0]
    assert event_types(service, connection_id)[-2:] == [
        "connection.refreshed",
        "connection.recovered",
    ]


def test_disabled_waits_for_the_idle_refresh_and_expired_without_refresh_token_is_flagged(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess
) -> None:
    disabled, expired, still_valid = connect_accounts(api, tenant, 3)
    set_due(service, [disabled], 200)
    update_connection(service, disabled, is_active=False)
    update_connection(
        service, expired, refresh_token_ct=None, expires_at=utcnow() - timedelta(seconds=5)
    )
    update_connection(
        service, still_valid, refresh_token_ct=None, expires_at=utcnow() + timedelta(seconds=200)
    )

    run_refresher_once(service, tenant.organization_id)

    got = states(service, [disabled, expired, still_valid])
    # Nobody can use a disabled connection's token: no refresh for the window alone.
    assert (got[disabled].status, got[disabled].version, got[disabled].refreshed_events) == (
        "active",
        1,
        0,
    )
    # Nothing can refresh an expired token without a refresh token: say so now.
    assert got[expired].status == "needs_reauth"
    assert got[expired].status_reason == "The access token expired and there is no refresh token."
    assert event_types(service, expired)[-1] == "connection.refresh_failed"
    # Without a refresh token but still valid: nothing to do until it expires.
    assert (got[still_valid].status, got[still_valid].version) == ("active", 1)
    assert event_types(service, still_valid) == ["connection.created"]

    # Idle for over a day, the disabled connection's grant is kept alive all the same.
    long_ago = utcnow() - timedelta(hours=25)
    update_connection(service, disabled, created_at=long_ago, last_refreshed_at=long_ago)
    run_refresher_once(service, tenant.organization_id)
    got = states(service, [disabled])
    assert (got[disabled].status, got[disabled].version, got[disabled].refreshed_events) == (
        "active",
        2,
        1,
    )
