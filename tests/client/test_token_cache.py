"""``Connectors.token``: a token is reused until 60 s before its ``expires_at`` without asking
the service again (counted in the service's own audit of tokens handed out), asked for again
inside that margin, fetched once for threads that ask together, and cached per connection and
end user and for the scopes it was granted."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from personal_connectors.client import TOKEN_MARGIN, Connectors, ConnectorsError
from personal_connectors.models import utcnow
from tests.client.conftest import client_of, connect, second_key, token_requests
from tests.conftest import Tenant
from tests.support.db import update_connection
from tests.support.oidc import OidcProvider
from tests.support.service import ServiceProcess
from tests.tokens.conftest import works_at_oidc


def test_a_second_call_is_answered_from_the_cache(
    pc: Connectors, service: ServiceProcess, tenant: Tenant, oidc: OidcProvider
) -> None:
    connection_id = connect(pc, login="cache-hit")
    first = pc.token(connection_id)
    assert first.expires_at is not None
    assert first.expires_at - datetime.now(UTC) > TOKEN_MARGIN  # an hour at this provider
    assert first.access_token and works_at_oidc(oidc, first.access_token)
    assert first.token_type == "Bearer" and first.connection_id == connection_id

    assert pc.token(connection_id) is first
    assert pc.token(connection_id, required_scopes="openid email") is first  # granted: cached

    marker = second_key(service, tenant)
    assert token_requests(service, connection_id, tenant.api_key_id, marker) == 1


def test_a_token_inside_the_margin_is_asked_for_again(
    pc: Connectors, service: ServiceProcess, tenant: Tenant
) -> None:
    """A token 55 s from expiry that the service still hands out as it is (its own refresh
    margin is a quarter of the 80 s lifetime): the client does not reuse it."""
    connection_id = connect(pc, login="cache-margin")
    now = utcnow()
    update_connection(
        service,
        connection_id,
        expires_at=now + timedelta(seconds=55),
        token_issued_at=now - timedelta(seconds=25),
    )

    first, second = pc.token(connection_id), pc.token(connection_id)
    assert first.expires_at is not None and first.expires_at - datetime.now(UTC) < TOKEN_MARGIN
    assert second.access_token == first.access_token  # the service did not refresh it
    marker = second_key(service, tenant)
    assert token_requests(service, connection_id, tenant.api_key_id, marker) == 2

    # Refreshed by the service once it is inside its own margin: the new token is cached.
    refreshed = pc.token(connection_id, force_refresh=True)
    assert refreshed.access_token != first.access_token
    assert pc.token(connection_id) is refreshed


def test_force_refresh_goes_to_the_service_and_replaces_the_cached_token(
    pc: Connectors, service: ServiceProcess, tenant: Tenant, oidc: OidcProvider
) -> None:
    connection_id = connect(pc, login="cache-force")
    cached = pc.token(connection_id)
    forced = pc.token(connection_id, force_refresh=True)
    assert forced.access_token != cached.access_token
    assert forced.access_token and works_at_oidc(oidc, forced.access_token)
    assert pc.token(connection_id) is forced
    marker = second_key(service, tenant)
    assert token_requests(service, connection_id, tenant.api_key_id, marker) == 2


def test_a_scope_the_cached_token_lacks_is_asked_of_the_service(
    pc: Connectors, service: ServiceProcess, tenant: Tenant
) -> None:
    connection_id = connect(pc, login="cache-scope")
    pc.token(connection_id)
    with pytest.raises(ConnectorsError) as refused:
        pc.token(connection_id, required_scopes="openid admin")
    assert refused.value.code == "INSUFFICIENT_SCOPE"
    assert refused.value.details["missing_scopes"] == ["admin"]
    # The refusal forgot the cached token: the next call asks again.
    pc.token(connection_id)
    marker = second_key(service, tenant)
    assert token_requests(service, connection_id, tenant.api_key_id, marker) == 2


def test_threads_asking_together_share_one_request(service: ServiceProcess, tenant: Tenant) -> None:
    with client_of(service, tenant) as setup:
        connection_id = connect(setup, login="cache-threads")
    callers = 8
    start = threading.Barrier(callers)
    got: list[str | None] = []

    with client_of(service, tenant) as pc:  # a fresh, empty cache

        def ask() -> None:
            start.wait()
            got.append(pc.token(connection_id).access_token)

        threads = [threading.Thread(target=ask) for _ in range(callers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    assert len(got) == callers and len(set(got)) == 1
    marker = second_key(service, tenant)
    assert token_requests(service, connection_id, tenant.api_key_id, marker) == 1
