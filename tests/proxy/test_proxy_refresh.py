"""A provider 401 is answered by one forced refresh — one across workers, however many calls
saw it — and one retry when the body can be sent again (SPEC §9)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from personal_connectors.models import utcnow
from personal_connectors.proxy.service import FRESH_TOKEN_SECONDS
from tests.conftest import Tenant
from tests.proxy.conftest import connect_to, proxied, refreshes
from tests.support import web
from tests.support.db import stored_tokens, update_connection
from tests.support.oidc import OidcProvider, free_port
from tests.support.service import ServiceProcess
from tests.support.upstream_api import UpstreamApi


def test_a_stale_token_is_refreshed_and_the_call_sent_again(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess, upstream: UpstreamApi
) -> None:
    connection_id = connect_to(api, tenant)
    old, _ = stored_tokens(service, connection_id)
    assert old is not None
    upstream.stale.add(old)

    response = proxied(api, tenant, connection_id, "echo/items", "POST", json={"name": "replayed"})

    assert response.status_code == 200, response.text
    new, _ = stored_tokens(service, connection_id)
    assert new != old
    assert [seen.token for seen in upstream.seen] == [old, new]
    assert response.json()["body"] == '{"name":"replayed"}'
    assert refreshes(service, connection_id) == 1


@pytest.fixture
def second_process(service: ServiceProcess, tmp_path: Path) -> Iterator[ServiceProcess]:
    """Another `connectors serve` on the same database, keys and catalog."""
    other = ServiceProcess(free_port(), dict(service.env), tmp_path / "second.log").start()
    yield other
    other.stop()


async def concurrently(urls: list[str], tenant: Tenant, connection_id: str) -> list[httpx.Response]:
    async with web.async_client(timeout=60) as client:
        return await asyncio.gather(
            *(
                client.get(
                    f"{url}/{connection_id}/proxy/echo/{n}",
                    params=tenant.org,
                    headers=tenant.headers,
                )
                for n, url in enumerate(urls)
            )
        )


@pytest.mark.parametrize("calls", [4, 20])
def test_calls_on_two_processes_that_see_401_refresh_once(
    api: httpx.Client,
    tenant: Tenant,
    service: ServiceProcess,
    second_process: ServiceProcess,
    upstream: UpstreamApi,
    oidc: OidcProvider,
    calls: int,
) -> None:
    """Concurrent calls, half on each process, all answered 401 before any refresh (the
    upstream holds its 401s until all have arrived): one refresh, and every call retried with
    its token. The local provider rotates refresh tokens with reuse detection, so a second
    refresh would have revoked the grant (and the last call would fail)."""
    connection_id = connect_to(api, tenant)
    old, _ = stored_tokens(service, connection_id)
    assert old is not None
    upstream.stale.add(old)
    upstream.hold_stale = calls

    urls = [service.api, second_process.api] * (calls // 2)
    responses = asyncio.run(concurrently(urls, tenant, connection_id))

    assert [r.status_code for r in responses] == [200] * calls, [r.text for r in responses]
    assert not upstream.waited_out
    assert upstream.stale_hits == calls  # every call met its 401
    new, _ = stored_tokens(service, connection_id)
    assert new != old and refreshes(service, connection_id) == 1
    assert sorted(seen.token or "" for seen in upstream.seen) == sorted(
        [old] * calls + [new] * calls
    )
    # At the provider: a second refresh would have replayed the consumed refresh token, and
    # the provider would have revoked the grant with every token of it.
    userinfo = web.get(
        oidc.metadata["userinfo_endpoint"], headers={"Authorization": f"Bearer {new}"}
    )
    assert userinfo.status_code == 200, userinfo.text
    assert proxied(api, tenant, connection_id, "echo").status_code == 200


def test_a_large_body_is_not_sent_twice_and_the_401_goes_back(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess, upstream: UpstreamApi
) -> None:
    """Over 1 MiB the body streams through once: the 401 comes back as the provider sent it,
    after the refresh, so the caller's own retry carries the new token."""
    connection_id = connect_to(api, tenant)
    old, _ = stored_tokens(service, connection_id)
    assert old is not None
    upstream.stale.add(old)

    response = proxied(api, tenant, connection_id, "echo", "PUT", content=b"x" * (1024 * 1024 + 1))

    assert response.status_code == 401
    assert response.headers["x-connectors-proxy"] == "upstream"
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert response.json() == {"message": "Bad credentials"}
    assert len(upstream.seen) == 1
    assert refreshes(service, connection_id) == 1
    again = proxied(api, tenant, connection_id, "echo", "PUT", content=b"x" * (1024 * 1024 + 1))
    assert again.status_code == 200 and again.json()["body_length"] == 1024 * 1024 + 1


def test_a_401_that_survives_the_refresh_goes_back(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess, upstream: UpstreamApi
) -> None:
    """One refresh and one retry, not a loop."""
    connection_id = connect_to(api, tenant)

    response = proxied(api, tenant, connection_id, "status/401")

    assert response.status_code == 401 and response.json() == {"from": "upstream"}
    assert response.headers["x-connectors-proxy"] == "upstream"
    assert len(upstream.seen) == 2
    assert refreshes(service, connection_id) == 1


def test_a_401_on_a_token_issued_lately_goes_back_without_a_refresh(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess, upstream: UpstreamApi
) -> None:
    """A caller repeating a call the provider always refuses: the first 401 refreshes the
    token, the next ones (on a token issued under FRESH_TOKEN_SECONDS ago) go back as they
    are, with no refresh and no retry; once the token is older, a 401 refreshes it again."""
    connection_id = connect_to(api, tenant)

    first = proxied(api, tenant, connection_id, "status/401")
    assert first.status_code == 401 and len(upstream.seen) == 2
    assert refreshes(service, connection_id) == 1
    issued, _ = stored_tokens(service, connection_id)

    for _ in range(3):
        again = proxied(api, tenant, connection_id, "status/401")
        assert again.status_code == 401 and again.json() == {"from": "upstream"}
        assert again.headers["x-connectors-proxy"] == "upstream"
    assert [seen.token for seen in upstream.seen[2:]] == [issued] * 3  # one call each
    assert refreshes(service, connection_id) == 1
    assert stored_tokens(service, connection_id)[0] == issued

    backdated = utcnow() - timedelta(seconds=FRESH_TOKEN_SECONDS + 1)
    update_connection(service, connection_id, token_issued_at=backdated)
    later = proxied(api, tenant, connection_id, "status/401")
    assert later.status_code == 401 and len(upstream.seen) == 7
    assert refreshes(service, connection_id) == 2
