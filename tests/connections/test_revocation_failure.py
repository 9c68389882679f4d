"""DELETE /{id} when the provider's revocation endpoint fails: the connection is still deleted,
its tokens wiped, and a ``connection.revocation_failed`` event says what the provider did (SPEC
§3.1: "failures recorded, never blocking the delete")."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from personal_connectors.models import ConnectionEvent
from tests.conftest import CLIENT_ID, CLIENT_SECRET, FAULTY_KEY, Tenant
from tests.flows.conftest import authorize_and_consent, follow_callback
from tests.support.db import connection_row, event_types, stored_tokens
from tests.support.fault_proxy import FaultProxy
from tests.support.oidc import OidcProvider, token_request
from tests.support.service import ServiceProcess

REVOCATION_PATH = "/token/revocation"


@pytest.fixture
def proxy(fault_proxy: FaultProxy) -> Iterator[FaultProxy]:
    fault_proxy.set_mode("pass")
    yield fault_proxy
    fault_proxy.set_mode("pass")


def connect_faulty(api: httpx.Client, tenant: Tenant) -> str:
    """A connection of the provider whose token and revocation calls cross the fault proxy."""
    flow = authorize_and_consent(
        api, tenant, login=f"rev-{os.urandom(4).hex()}", connector_type=FAULTY_KEY
    )
    response = follow_callback(flow.callback_url)
    assert response.status_code == 200, response.text
    return str(response.json()["data"]["connection_id"])


def last_event(service: ServiceProcess, connection_id: str, kind: str) -> dict[str, Any]:
    async def work(session, runtime):  # type: ignore[no-untyped-def]
        rows = await session.execute(
            select(ConnectionEvent.detail)
            .where(ConnectionEvent.connection_id == connection_id, ConnectionEvent.type == kind)
            .order_by(ConnectionEvent.created_at.desc())
        )
        return rows.scalars().first()

    detail = service.run_db(work)
    assert detail is not None, f"no {kind} event"
    return dict(detail)


def refresh_status(oidc: OidcProvider, refresh_token: str | None) -> int:
    assert refresh_token is not None
    data = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    return token_request(oidc, CLIENT_ID, CLIENT_SECRET, data).status_code


@pytest.mark.parametrize("fault", ["status:500", "drop"])
def test_a_failed_revocation_still_deletes_and_is_recorded(
    api: httpx.Client,
    tenant: Tenant,
    service: ServiceProcess,
    proxy: FaultProxy,
    oidc: OidcProvider,
    fault: str,
) -> None:
    connection_id = connect_faulty(api, tenant)
    _, refresh_token = stored_tokens(service, connection_id)
    before = proxy.count(REVOCATION_PATH)
    proxy.set_mode(fault)

    deleted = api.delete(f"/{connection_id}", headers=tenant.headers)

    assert deleted.status_code == 204 and deleted.content == b""
    assert proxy.count(REVOCATION_PATH) > before  # the service did try
    assert event_types(service, connection_id)[-2:] == [
        "connection.revocation_failed",
        "connection.deleted",
    ]
    outcomes = last_event(service, connection_id, "connection.revocation_failed")["outcomes"]
    assert outcomes and not any(outcome["revoked"] for outcome in outcomes)
    assert all(outcome["reason"] for outcome in outcomes)
    assert stored_tokens(service, connection_id) == (None, None)
    assert connection_row(service, connection_id).status == "deleted"
    assert (
        api.get(f"/{connection_id}", params=tenant.org, headers=tenant.headers).status_code == 404
    )
    listed = api.get("", params=tenant.org, headers=tenant.headers).json()
    assert connection_id not in {item["id"] for item in listed}
    assert api.delete(f"/{connection_id}", headers=tenant.headers).status_code == 404
    # What the failure leaves behind, and why it is recorded: the grant still lives there.
    proxy.set_mode("pass")
    assert refresh_status(oidc, refresh_token) == 200


def test_a_revocation_that_succeeds_ends_the_grant_at_the_provider(
    api: httpx.Client,
    tenant: Tenant,
    service: ServiceProcess,
    proxy: FaultProxy,
    oidc: OidcProvider,
) -> None:
    connection_id = connect_faulty(api, tenant)
    _, refresh_token = stored_tokens(service, connection_id)
    assert api.delete(f"/{connection_id}", headers=tenant.headers).status_code == 204
    assert event_types(service, connection_id)[-2:] == ["connection.revoked", "connection.deleted"]
    assert refresh_status(oidc, refresh_token) == 400
