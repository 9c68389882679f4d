"""``AsyncConnectors``: the same calls with ``await``, against the running service — the flow
through the real provider, the list paged, the token cache (one request for tasks asking
together, counted in the service's audit), errors, end users with a service key."""

from __future__ import annotations

import asyncio
import os

import pytest

from personal_connectors.client import AsyncConnectors, ConnectorsError, Token
from tests.client.conftest import async_client_of, consent, logged, second_key, token_requests
from tests.conftest import PROVIDER_KEY, Tenant
from tests.support.oidc import OidcProvider
from tests.support.platform import make_organization_key
from tests.support.service import ServiceProcess
from tests.tokens.conftest import works_at_oidc


async def connect(pc: AsyncConnectors, login: str) -> str:
    started = await pc.authorize(PROVIDER_KEY)
    assert (await pc.complete(started.state_token)).connected is False
    connection_id = await asyncio.to_thread(consent, started.authorization_url, login)
    done = await pc.complete(started.state_token)
    assert done.connected and done.connection is not None
    assert done.connection.id == connection_id
    return connection_id


def test_authorize_complete_list_and_page(service: ServiceProcess, tenant: Tenant) -> None:
    async def main() -> None:
        async with async_client_of(service, tenant) as pc:
            ids = [await connect(pc, f"async-page-{n}") for n in range(3)]
            paged = [c.id async for c in pc.iter_connections(page_size=1)]
            assert paged == list(reversed(ids))
            assert [c.id for c in await pc.connections()] == paged
            assert (await pc.get(ids[0])).account_id == "async-page-0"
            updated = await pc.update(ids[0], tags={"team": "red"})
            assert updated.tags == {"team": "red"}
            assert [c.id for c in await pc.connections(tags={"team": "red"})] == [ids[0]]
            assert (await pc.test(ids[0])).success

            await pc.delete(ids[0])
            with pytest.raises(ConnectorsError) as gone:
                await pc.get(ids[0])
            assert (gone.value.code, gone.value.status) == ("RESOURCE_NOT_FOUND", 404)
            assert logged(service, gone.value.trace_id)

    asyncio.run(main())


def test_tasks_asking_together_share_one_request_and_then_the_cache(
    service: ServiceProcess, tenant: Tenant, oidc: OidcProvider
) -> None:
    async def main() -> tuple[str, list[Token]]:
        async with async_client_of(service, tenant) as pc:
            connection_id = await connect(pc, "async-cache")
            together = await asyncio.gather(*(pc.token(connection_id) for _ in range(8)))
            later = await pc.token(connection_id, required_scopes=["openid"])
            return connection_id, [*together, later]

    connection_id, tokens = asyncio.run(main())
    assert len({token.access_token for token in tokens}) == 1
    assert tokens[0].access_token and works_at_oidc(oidc, tokens[0].access_token)
    marker = second_key(service, tenant)
    assert token_requests(service, connection_id, tenant.api_key_id, marker) == 1


def test_errors_carry_code_status_trace_id_and_details(
    service: ServiceProcess, tenant: Tenant
) -> None:
    async def main() -> None:
        async with async_client_of(service, tenant) as pc:
            connection_id = await connect(pc, "async-errors")
            with pytest.raises(ConnectorsError) as refused:
                await pc.token(connection_id, required_scopes="openid admin")
            error = refused.value
            assert (error.code, error.status) == ("INSUFFICIENT_SCOPE", 409)
            assert error.details["missing_scopes"] == ["admin"]
            assert error.details["authorize"]["connection_id"] == connection_id
            assert error.trace_id and error.trace_id.startswith("req_")

    asyncio.run(main())


def test_a_cancelled_caller_does_not_cancel_the_request_the_others_wait_for(
    service: ServiceProcess, tenant: Tenant
) -> None:
    async def main() -> None:
        async with async_client_of(service, tenant) as pc:
            connection_id = await connect(pc, "async-cancel")
            first = asyncio.ensure_future(pc.token(connection_id))
            second = asyncio.ensure_future(pc.token(connection_id))
            await asyncio.sleep(0)  # both are waiting on the one request
            first.cancel()
            token = await second
            assert token.access_token
            assert first.cancelled()

    asyncio.run(main())


def test_a_service_key_and_its_end_users(service: ServiceProcess, tenant: Tenant) -> None:
    platform = make_organization_key(service, tenant.organization_id)
    alice_id, bob_id = (f"user-{os.urandom(4).hex()}" for _ in range(2))

    async def main() -> None:
        async with AsyncConnectors(service.base_url, platform.api_key) as backend:
            alice, bob = backend.for_end_user(alice_id), backend.for_end_user(bob_id)
            connection_id = await connect(alice, "async-alice")
            assert (await alice.token(connection_id)).access_token
            assert await bob.connections() == []
            with pytest.raises(ConnectorsError) as foreign:
                await bob.token(connection_id)
            assert foreign.value.status == 404

            made = await backend.end_users.put(bob_id, display_name="Bob", tags={"plan": "pro"})
            assert (made.id, made.display_name, made.tags) == (bob_id, "Bob", {"plan": "pro"})
            assert (await backend.end_users.get(alice_id)).connection_count == 1
            listed = {e.id async for e in backend.end_users.iter(page_size=1)}
            assert listed == {alice_id, bob_id}
            assert {e.id for e in await backend.end_users.list()} == listed
            await backend.end_users.delete(alice_id)
            assert await alice.connections() == []
            with pytest.raises(ConnectorsError) as gone:
                await backend.end_users.get(alice_id)
            assert gone.value.code == "RESOURCE_NOT_FOUND"

    asyncio.run(main())
