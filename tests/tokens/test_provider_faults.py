"""Provider faults between the service and the provider (a misbehaving loopback proxy):
no passing fault marks a connection needs_reauth, no token is lost, answers stay bounded."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.conftest import FAULTY_KEY, Tenant
from tests.flows.conftest import authorize_and_consent, follow_callback
from tests.support.db import connection_row, event_types, set_expiry, stored_tokens
from tests.support.fault_proxy import FaultProxy
from tests.support.service import ServiceProcess
from tests.tokens.conftest import TOKEN_PATH, token


@pytest.fixture
def faulty_connection(api: httpx.Client, tenant: Tenant, proxy: FaultProxy) -> str:
    flow = authorize_and_consent(api, tenant, connector_type=FAULTY_KEY)
    response = follow_callback(flow.callback_url)
    assert response.status_code == 200, response.text
    return str(response.json()["data"]["connection_id"])


# A slow answer is no fault here: it is stored when it comes (tests/tokens/test_slow_provider.py).
@pytest.mark.parametrize("fault", ["status:503", "status:500", "drop"])
def test_a_fault_with_a_valid_token_left_serves_it_and_keeps_the_status(
    api: httpx.Client,
    tenant: Tenant,
    service: ServiceProcess,
    proxy: FaultProxy,
    faulty_connection: str,
    fault: str,
) -> None:
    access, refresh = stored_tokens(service, faulty_connection)
    set_expiry(service, faulty_connection, 60)  # due for refresh, still valid
    proxy.set_mode(fault)
    started = time.monotonic()
    response = token(api, tenant, faulty_connection)
    elapsed = time.monotonic() - started
    assert response.status_code == 200 and response.json()["access_token"] == access
    assert elapsed < 8, elapsed  # retry budget (1 s) + provider timeout (2 s) + slack
    row = connection_row(service, faulty_connection)
    assert row.status == "active" and row.refresh_failures == 1
    assert stored_tokens(service, faulty_connection) == (access, refresh)
    assert event_types(service, faulty_connection)[-1] == "connection.refresh_failed"


def test_no_valid_token_left_is_a_503_then_recovery(
    api: httpx.Client,
    tenant: Tenant,
    service: ServiceProcess,
    proxy: FaultProxy,
    faulty_connection: str,
) -> None:
    access, refresh = stored_tokens(service, faulty_connection)
    set_expiry(service, faulty_connection, -5)
    proxy.set_mode("status:503")
    before = proxy.count(TOKEN_PATH)
    down = token(api, tenant, faulty_connection)
    assert down.status_code == 503
    assert (
        down.json()["error"]["code"] == "PROVIDER_UNAVAILABLE"
        and int(down.headers["retry-after"]) >= 1
    )
    assert proxy.count(TOKEN_PATH) - before >= 2  # retried with backoff inside the budget
    assert connection_row(service, faulty_connection).status == "active"
    assert stored_tokens(service, faulty_connection) == (access, refresh)

    proxy.set_mode("garbage")
    garbage = token(api, tenant, faulty_connection)
    assert garbage.status_code == 502 and garbage.json()["error"]["code"] == "PROVIDER_ERROR"
    assert connection_row(service, faulty_connection).status == "active"

    proxy.set_mode("pass")
    healed = token(api, tenant, faulty_connection)
    assert healed.status_code == 200 and healed.json()["access_token"] != access
    row = connection_row(service, faulty_connection)
    assert row.status == "active" and row.refresh_failures == 0
    assert event_types(service, faulty_connection)[-2:] == [
        "connection.refreshed",
        "connection.recovered",
    ]
