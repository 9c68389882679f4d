"""What the client tests share: clients of the running service for a tenant or a service key,
connecting an account through the real OpenID provider with the client's own calls, and
counting the token requests that reached the service (its ``connection.token_issued`` audit).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from personal_connectors.client import AsyncConnectors, Connectors
from personal_connectors.events.types import EventType
from personal_connectors.identity.service import IdentityService
from personal_connectors.models import ConnectionEvent
from tests.conftest import PROVIDER_KEY, Tenant
from tests.flows.conftest import follow_callback
from tests.support import outputs, web
from tests.support.oidc import login_and_consent
from tests.support.service import ServiceProcess

AUDIT_WAIT_S = 30.0  # the audit writer flushes every second; a busy machine may be slower


def client_of(service: ServiceProcess, tenant: Tenant) -> Connectors:
    return Connectors(service.base_url, tenant.api_key, tenant.organization_id)


def async_client_of(service: ServiceProcess, tenant: Tenant) -> AsyncConnectors:
    return AsyncConnectors(service.base_url, tenant.api_key, tenant.organization_id)


@pytest.fixture
def pc(service: ServiceProcess, tenant: Tenant) -> Iterator[Connectors]:
    with client_of(service, tenant) as client:
        yield client


def logged(service: ServiceProcess, trace_id: str | None) -> bool:
    """Whether the service's access log names ``trace_id`` (written just after the answer)."""
    deadline = time.monotonic() + AUDIT_WAIT_S
    while trace_id is None or trace_id not in service.logs():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def consent(authorization_url: str, login: str = "alice") -> str:
    """The user signs in and consents at the provider; the browser is sent back to the
    service's callback, which stores the connection. Returns the connection id."""
    callback = follow_callback(login_and_consent(authorization_url, login=login))
    assert callback.status_code == 200, callback.text
    return str(callback.json()["data"]["connection_id"])


def connect(pc: Connectors, login: str = "alice", **options: object) -> str:
    """A connection made with the client's own ``authorize`` and the real provider."""
    started = pc.authorize(PROVIDER_KEY, **options)  # type: ignore[arg-type]
    return consent(started.authorization_url, login)


def second_key(service: ServiceProcess, tenant: Tenant) -> Tenant:
    """Another user key of the tenant's user: its token requests are told apart in the audit."""

    async def work(session, runtime):  # type: ignore[no-untyped-def]
        issued = await IdentityService(session).create_api_key(tenant.user_id)
        outputs.RECORD.add_secret(issued.plaintext, "api_key")
        return Tenant(tenant.organization_id, tenant.user_id, issued.plaintext, issued.key.id)

    return service.run_db(work)


def _issued_by_key(service: ServiceProcess, connection_id: str) -> list[str]:
    async def work(session, runtime):  # type: ignore[no-untyped-def]
        rows = await session.execute(
            select(ConnectionEvent.detail).where(
                ConnectionEvent.connection_id == connection_id,
                ConnectionEvent.type == EventType.TOKEN_ISSUED.value,
            )
        )
        return [detail["api_key_id"] for detail in rows.scalars()]

    return service.run_db(work)


def token_requests(
    service: ServiceProcess, connection_id: str, caller_key_id: str, marker: Tenant
) -> int:
    """How many tokens of ``connection_id`` the service handed to the key ``caller_key_id``.

    The service records each token it hands out in a queue that one writer empties in order
    (events/audit.py). So a request made now with ``marker``'s key is written after every
    earlier one: once its row is there, so are the caller's, and the count is final.
    """
    sent = web.post(
        f"{service.api}/{connection_id}/token",
        params=marker.org,
        headers=marker.headers,
        timeout=30,
    )
    assert sent.status_code == 200, sent.text
    deadline = time.monotonic() + AUDIT_WAIT_S
    while marker.api_key_id not in (issued := _issued_by_key(service, connection_id)):
        assert time.monotonic() < deadline, "the marker's token request was never recorded"
        time.sleep(0.1)
    return issued.count(caller_key_id)
