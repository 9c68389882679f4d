"""Exactly one refresh across processes: 100 concurrent token requests on one about-to-expire
connection, split across two server processes on the same database.

The provider rotates refresh tokens with reuse detection: a second refresh would present the
already-used refresh token, the provider would revoke the whole grant, and callers would get
409s. All 100 getting the same new token, with one refresh event, shows one refresh happened.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import CLIENT_ID, CLIENT_SECRET, Tenant
from tests.flows.conftest import connect
from tests.support import web
from tests.support.db import event_types, set_expiry, stored_tokens
from tests.support.oidc import OidcProvider, free_port, token_request
from tests.support.service import ServiceProcess


@pytest.fixture
def second_process(service: ServiceProcess, tmp_path) -> Iterator[ServiceProcess]:  # type: ignore[no-untyped-def]
    """Another `connectors serve` on the same database, keys and catalog."""
    port = free_port()
    other = ServiceProcess(port, dict(service.env), tmp_path / "second.log").start()
    yield other
    other.stop()


async def hammer(
    urls: list[str], tenant: Tenant, connection_id: str, count: int
) -> list[httpx.Response]:
    async with web.async_client(timeout=60, limits=httpx.Limits(max_connections=count)) as client:
        return await asyncio.gather(
            *(
                client.post(
                    f"{urls[i % len(urls)]}/{connection_id}/token",
                    params=tenant.org,
                    headers=tenant.headers,
                )
                for i in range(count)
            )
        )


def test_one_refresh_for_a_hundred_callers_on_two_processes(
    api: httpx.Client,
    tenant: Tenant,
    service: ServiceProcess,
    second_process: ServiceProcess,
    oidc: OidcProvider,
) -> None:
    connection_id = connect(api, tenant)
    old_access, _ = stored_tokens(service, connection_id)
    set_expiry(service, connection_id, 20)

    responses = asyncio.run(hammer([service.api, second_process.api], tenant, connection_id, 100))

    assert [r.status_code for r in responses] == [200] * 100, {
        r.status_code: r.text for r in responses
    }
    tokens = {r.json()["access_token"] for r in responses}
    new_access, new_refresh = stored_tokens(service, connection_id)
    assert tokens == {new_access} and new_access != old_access
    assert event_types(service, connection_id).count("connection.refreshed") == 1
    # The grant survived: the stored refresh token still works at the provider.
    assert (
        token_request(
            oidc,
            CLIENT_ID,
            CLIENT_SECRET,
            {"grant_type": "refresh_token", "refresh_token": new_refresh},
        ).status_code
        == 200
    )
