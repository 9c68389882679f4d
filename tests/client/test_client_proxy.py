"""``proxy(id)``: calls to the connection's provider API through the service's proxy route
(SPEC §9), sync and async. The provider here is the real OpenID provider, declared with its
issuer as the API base, so ``/me`` is its userinfo endpoint and answers only a valid token.

A service and a provider of this module's own: the entry needs an ``api_base_url``, which the
session's providers file does not give the local provider.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from personal_connectors.apps.service import OAuthAppService
from personal_connectors.client import AsyncConnectors, Connectors, ConnectorsError
from tests.client.conftest import client_of, connect
from tests.conftest import (
    CLIENT_ID,
    CLIENT_SECRET,
    PROVIDER_KEY,
    Tenant,
    local_provider_entry,
    make_tenant,
)
from tests.support.oidc import OidcProvider, free_port
from tests.support.platform import make_organization_key
from tests.support.service import TEST_ENCRYPTION_KEY, ServiceProcess


@pytest.fixture(scope="module")
def api_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    workdir: Path = tmp_path_factory.mktemp("client-proxy")
    port = free_port()
    client = {
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "redirect_uris": [f"http://127.0.0.1:{port}/v1/personal-connectors/callback"],
        "grant_types": ["authorization_code", "refresh_token"],
        "token_endpoint_auth_method": "client_secret_basic",
    }
    with OidcProvider.start([client], workdir=workdir / "oidc") as oidc:
        entry = {**local_provider_entry(oidc), "api_base_url": oidc.issuer}
        providers = workdir / "providers.yaml"
        providers.write_text(yaml.safe_dump({PROVIDER_KEY: entry}))
        env = {
            "CONNECTORS_DATA_DIR": str(workdir / "data"),
            "CONNECTORS_BASE_URL": f"http://127.0.0.1:{port}",
            "CONNECTORS_ENCRYPTION_KEYS": TEST_ENCRYPTION_KEY,
            "CONNECTORS_PROVIDERS_FILE": str(providers),
        }
        service = ServiceProcess(port, env, workdir / "service.log").start()

        async def configure(session, runtime):  # type: ignore[no-untyped-def]
            apps = OAuthAppService(session, runtime.sealer, runtime.catalog)
            await apps.configure(
                None, PROVIDER_KEY, client_id=CLIENT_ID, client_secret=CLIENT_SECRET
            )

        try:
            service.run_db(configure)
            yield service
        finally:
            service.stop()


@pytest.fixture
def caller(api_service: ServiceProcess) -> Tenant:
    return make_tenant(api_service)


def test_a_proxied_get_returns_the_providers_answer(
    api_service: ServiceProcess, caller: Tenant
) -> None:
    with client_of(api_service, caller) as pc:
        connection_id = connect(pc, login="proxy-user")
        api = pc.proxy(connection_id)

        me = api.get("/me")
        assert me.status_code == 200, me.text
        assert me.headers["x-connectors-proxy"] == "upstream"
        assert me.json()["sub"] == "proxy-user"

        # The provider's own 404 is an answer, not an error of the service.
        missing = api.get("/no-such-endpoint")
        assert missing.status_code == 404
        assert missing.headers["x-connectors-proxy"] == "upstream"

        # The service's own refusals raise, as every other call's do.
        with pytest.raises(ConnectorsError) as unknown:
            pc.proxy("conn_" + "0" * 32).get("/me")
        assert (unknown.value.code, unknown.value.status) == ("RESOURCE_NOT_FOUND", 404)
        with pytest.raises(ConnectorsError) as escaping:
            api.get("/a/../../me")
        assert (escaping.value.code, escaping.value.status) == ("VALIDATION_ERROR", 400)


def test_the_async_proxy_answers_the_same(api_service: ServiceProcess, caller: Tenant) -> None:
    with client_of(api_service, caller) as setup:
        connection_id = connect(setup, login="proxy-async")

    async def main() -> None:
        async with AsyncConnectors(
            api_service.base_url, caller.api_key, caller.organization_id
        ) as pc:
            me = await pc.proxy(connection_id).get("/me", headers={"Accept": "application/json"})
            assert me.status_code == 200, me.text
            assert me.json()["sub"] == "proxy-async"
            assert me.headers["x-connectors-proxy"] == "upstream"

    asyncio.run(main())


def test_a_proxy_call_acts_for_the_clients_end_user(
    api_service: ServiceProcess, caller: Tenant
) -> None:
    platform = make_organization_key(api_service, caller.organization_id)
    with Connectors(api_service.base_url, platform.api_key) as backend:
        alice, bob = backend.for_end_user("proxy-alice"), backend.for_end_user("proxy-bob")
        connection_id = connect(alice, login="proxy-alice")
        assert alice.proxy(connection_id).get("/me").json()["sub"] == "proxy-alice"
        with pytest.raises(ConnectorsError) as foreign:
            bob.proxy(connection_id).get("/me")
        assert foreign.value.status == 404


def test_a_query_written_in_the_path_is_sent_with_the_params() -> None:
    """httpx replaces a URL's own query with the ``params`` it is given; the client keeps both
    (the path's first), as a caller writing ``search?q=…`` expects."""
    seen: list[httpx.URL] = []

    def provider(request: httpx.Request) -> httpx.Response:
        seen.append(request.url)
        return httpx.Response(200, json={})

    http = httpx.Client(transport=httpx.MockTransport(provider))
    with Connectors("http://service.test", "ak_test", "org_1", http=http) as pc:
        pc.proxy("conn_1").get("search/issues?q=is%3Aopen&per_page=5", params={"page": 2})
        pc.proxy("conn_1").get("user?")
        pc.proxy("conn_1").get("events?since=2026-01-01T00:00:00%2B00:00&flag")
    with Connectors("http://service.test", "ak_test", http=http) as pc:
        pc.proxy("conn_1").get("user")

    assert seen[0].path == "/v1/personal-connectors/conn_1/proxy/search/issues"
    assert list(seen[0].params.multi_items()) == [
        ("organization_id", "org_1"),
        ("q", "is:open"),
        ("per_page", "5"),
        ("page", "2"),
    ]
    assert seen[1].path.endswith("/proxy/user")
    assert list(seen[1].params.multi_items()) == [("organization_id", "org_1")]
    # As written: an encoded `+` stays encoded, a name without a value stays bare.
    assert seen[2].query == b"organization_id=org_1&since=2026-01-01T00:00:00%2B00:00&flag"
    assert str(seen[3]) == "http://service.test/v1/personal-connectors/conn_1/proxy/user"
