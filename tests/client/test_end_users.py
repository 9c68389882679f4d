"""A platform's backend with one service key (SPEC §8): the client names its end user on every
call that acts for one, ``for_end_user`` switches user on the same httpx client and cache
without one end user ever getting another's token, and ``end_users`` puts, reads, pages and
erases them."""

from __future__ import annotations

import os

import pytest

from personal_connectors.client import Connectors, ConnectorsError
from tests.client.conftest import connect
from tests.conftest import Tenant
from tests.support import web
from tests.support.oidc import OidcProvider
from tests.support.platform import OrganizationKey, make_organization_key
from tests.support.service import ServiceProcess
from tests.tokens.conftest import works_at_oidc


@pytest.fixture
def platform(service: ServiceProcess, tenant: Tenant) -> OrganizationKey:
    return make_organization_key(service, tenant.organization_id)


@pytest.fixture
def backend(service: ServiceProcess, platform: OrganizationKey) -> Connectors:
    """The platform's client: a service key, its organization implied, no end user yet."""
    return Connectors(service.base_url, platform.api_key)


def user_id() -> str:
    return f"user-{os.urandom(4).hex()}"


def test_a_service_key_acts_for_the_end_user_it_names(
    backend: Connectors, oidc: OidcProvider, tenant: Tenant
) -> None:
    alice_id, bob_id = user_id(), user_id()
    alice, bob = backend.for_end_user(alice_id), backend.for_end_user(bob_id)
    assert alice.end_user_id == alice_id and backend.end_user_id is None

    connection_id = connect(alice, login="alice-eu")
    [listed] = alice.connections()
    assert listed.id == connection_id and listed.end_user_id == alice_id
    token = alice.token(connection_id)
    assert token.access_token and works_at_oidc(oidc, token.access_token)

    # Bob shares the client and its cache, never Alice's connection or her cached token.
    assert bob.connections() == []
    for call in (bob.token, bob.get):
        with pytest.raises(ConnectorsError) as foreign:
            call(connection_id)
        assert (foreign.value.code, foreign.value.status) == ("RESOURCE_NOT_FOUND", 404)
    assert alice.token(connection_id) is token

    # Without an end user the key lists every end user's connections of the organization...
    assert [c.id for c in backend.connections()] == [connection_id]
    # ... and is refused where it must act for one.
    with pytest.raises(ConnectorsError) as unnamed:
        backend.token(connection_id)
    assert (unnamed.value.code, unnamed.value.status) == ("VALIDATION_ERROR", 400)
    backend.close()


def test_a_user_key_naming_an_end_user_is_refused(service: ServiceProcess, tenant: Tenant) -> None:
    pc = Connectors(service.base_url, tenant.api_key, tenant.organization_id, "user-1")
    with pc, pytest.raises(ConnectorsError) as refused:
        pc.connections()
    assert (refused.value.code, refused.value.status) == ("INSUFFICIENT_PERMISSIONS", 403)


def test_end_users_are_put_read_paged_and_erased(
    backend: Connectors, service: ServiceProcess, platform: OrganizationKey
) -> None:
    ids = [user_id() for _ in range(2)] + [f"team:{os.urandom(2).hex()}@a.b|c-d_e"]
    for n, end_user in enumerate(ids):
        made = backend.end_users.put(
            end_user, email=f"{end_user}@example.test", display_name=f"User {n}", tags={"n": str(n)}
        )
        assert (made.id, made.display_name, made.tags) == (end_user, f"User {n}", {"n": str(n)})
        assert made.connection_count == 0

    connection_id = connect(backend.for_end_user(ids[0]), login="erased-eu")
    fetched = backend.end_users.get(ids[0])
    assert fetched.email == f"{ids[0]}@example.test" and fetched.connection_count == 1

    # One end user a page: every one of them, by following the Link header.
    assert {e.id for e in backend.end_users.list(page_size=1)} == set(ids)
    assert [e.id for e in backend.end_users.iter(page_size=2)] == [
        e.id for e in backend.end_users.list()
    ]

    backend.end_users.delete(ids[0])
    with pytest.raises(ConnectorsError) as gone:
        backend.end_users.get(ids[0])
    assert (gone.value.code, gone.value.status) == ("RESOURCE_NOT_FOUND", 404)
    # Its connection went with it.
    raw = web.get(
        f"{service.api}/{connection_id}",
        params={"end_user_id": ids[0]},
        headers=platform.headers,
        timeout=30,
    )
    assert raw.status_code == 404, raw.text
    assert [c.id for c in backend.connections()] == []
    backend.close()
