"""Refresh margins relative to a token's lifetime, and leases kept only while their holder lives.

A token living 3 seconds is refreshed once per lifetime (in its last quarter), not on every
request; the background refresher takes a token up at its half-life, not as soon as it enters
the refresher's window. A lease is short and renewed by a living holder, so a slow provider
never hands the refresh to a second sender, while a killed holder's work is taken over within a
lease's life (tests/tokens/test_kill9.py).
"""

from __future__ import annotations

import json
import subprocess
import time
from datetime import UTC, datetime, timedelta

import httpx

from personal_connectors.models import utcnow
from tests.conftest import FAULTY_KEY, Tenant
from tests.support.db import connection_row, update_connection
from tests.support.fake_provider import SHORT_LIFETIME, FakeProvider
from tests.support.fault_proxy import FaultProxy
from tests.support.oidc import OidcProvider
from tests.support.service import ServiceProcess
from tests.tokens.conftest import (
    TOKEN_PATH,
    connect_accounts,
    connect_fake,
    refresher_command,
    refresher_env,
    run_refresher_once,
    set_due,
    token,
    wait_for,
    works_at_oidc,
)


def seconds_left(expires_at: str) -> float:
    return (datetime.fromisoformat(expires_at) - datetime.now(UTC)).total_seconds()


def test_a_three_second_token_is_refreshed_once_per_lifetime_not_on_every_request(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess, fake_provider: FakeProvider
) -> None:
    cid = connect_fake(api, tenant, "fake-shortlived")
    # Its lifetime is known from its first refresh on (as connected, the fixed margin applies).
    assert token(api, tenant, cid, force_refresh="true").status_code == 200
    before = fake_provider.refreshes["shortlived"]
    calls = 0
    started = time.monotonic()
    while time.monotonic() - started < 2 * SHORT_LIFETIME or calls < 10:
        response = token(api, tenant, cid)
        assert response.status_code == 200, response.text
        body = response.json()
        assert seconds_left(body["expires_at"]) > 0  # never an expired token
        assert fake_provider.is_live(body["access_token"])
        calls += 1
    refreshed = fake_provider.refreshes["shortlived"] - before
    # Two lifetimes: two refreshes, give or take the one in progress at either end.
    assert 1 <= refreshed <= 3 < calls, (refreshed, calls)
    row = connection_row(service, cid)
    assert row.token_issued_at is not None and row.expires_at is not None
    lifetime = (row.expires_at - row.token_issued_at).total_seconds()
    assert abs(lifetime - SHORT_LIFETIME) < 0.5, lifetime


def test_the_refresher_takes_a_token_up_at_its_half_life_not_before(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess
) -> None:
    [cid] = connect_accounts(api, tenant, 1)
    now = utcnow()
    # Issued a minute ago, living ten: inside the refresher's window (600 s) but young.
    update_connection(
        service,
        cid,
        token_issued_at=now - timedelta(seconds=60),
        expires_at=now + timedelta(seconds=540),
        refresh_due_at=now + timedelta(seconds=240),
    )
    assert run_refresher_once(service, tenant.organization_id)["refreshed"] == 0

    update_connection(service, cid, refresh_due_at=now - timedelta(seconds=1))  # half-life passed
    assert run_refresher_once(service, tenant.organization_id)["refreshed"] == 1

    # The refreshed token's half-life is stored with it.
    row = connection_row(service, cid)
    assert row.token_issued_at is not None and row.expires_at is not None
    half_life = row.token_issued_at + (row.expires_at - row.token_issued_at) / 2
    assert row.refresh_due_at is not None
    assert abs(row.refresh_due_at - half_life) < timedelta(seconds=1)


def test_a_living_holder_keeps_its_short_lease_through_a_slow_answer(
    api: httpx.Client,
    tenant: Tenant,
    service: ServiceProcess,
    proxy: FaultProxy,
    oidc: OidcProvider,
) -> None:
    [cid] = connect_accounts(api, tenant, 1, connector_type=FAULTY_KEY)
    set_due(service, [cid], 200)
    proxy.set_mode("delay:8")  # longer than four lease lives
    before = proxy.count(TOKEN_PATH)
    process = subprocess.Popen(
        refresher_command("--once", "--json", "--org", tenant.organization_id),
        env=refresher_env(
            service,
            CONNECTORS_REFRESH_LEASE_SECONDS="2",  # renewed every 2/3 s
            CONNECTORS_REFRESH_REQUEST_SECONDS="15",
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: proxy.count(TOKEN_PATH) - before == 1, what="the request sent")
        first_until = connection_row(service, cid).refresh_lease_until
        assert first_until is not None

        def outlived_its_first_life() -> bool:
            until = connection_row(service, cid).refresh_lease_until
            return utcnow() > first_until and until is not None and until > utcnow()

        wait_for(outlived_its_first_life, what="the lease renewed past its first life")
        # A caller now finds the lease held: it waits for the holder (and, past its own wait,
        # takes the still-valid token); it never sends the refresh token a second time.
        response = token(api, tenant, cid, force_refresh="true")
        assert response.status_code == 200, response.text
        assert proxy.count(TOKEN_PATH) - before == 1
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr[-3000:]
    assert json.loads(stdout)["refreshed"] == 1
    assert proxy.count(TOKEN_PATH) - before == 1
    proxy.set_mode("pass")
    forced = token(api, tenant, cid, force_refresh="true")
    assert forced.status_code == 200, forced.text
    assert works_at_oidc(oidc, forced.json()["access_token"])
