"""The upstream is always the entry's host (SPEC §9): paths that could leave it, host values
that fail the entry's patterns and URLs that break the outbound rule are refused before any
call; one end user never reaches another's connection."""

from __future__ import annotations

import http.client
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from personal_connectors.identity import pct
from tests.conftest import Tenant
from tests.proxy.conftest import connect_to, is_envelope, proxied
from tests.support import web
from tests.support.db import update_connection
from tests.support.oidc import free_port
from tests.support.platform import make_organization_key
from tests.support.service import ServiceProcess
from tests.support.upstream_api import PROXY_META_KEY, PROXY_PORT_KEY, UpstreamApi

UNSAFE_PATHS = (
    "http://evil.example/x",
    "https:%2F%2Fevil.example",
    "HTTPS%3A%2F%2Fevil.example",
    "%2F%2Fevil.example/x",  # //evil.example
    "%2Fetc/passwd",
    "../admin",
    "echo/../../admin",
    "echo/%2e%2e/admin",
    "echo/%2E%2E%2Fadmin",
    "echo/%252e%252e/admin",  # encoded twice
    "echo/..;/admin",
    "user@evil.example/x",
    "user%40evil.example/x",
    "echo\\..\\admin",
    "echo%5Cadmin",
    "echo/%09tab",
    "javascript:alert(1)",
    # More of the same kinds: the scheme's case, a bare or half-encoded `..`, a `..` whose
    # slashes are encoded, an `@` or backslash encoded twice, a backslash standing for `/`.
    "HtTp://evil.example/x",
    "http:evil.example",
    "..",
    "%2e%2e",
    ".%2E/admin",
    "%2E./admin",
    "echo/..%2Fadmin",
    "echo%2F..%2F..%2Fadmin",
    "echo/%2e%2e%5cadmin",
    "user%2540evil.example/x",
    "a:b@evil.example/x",
    "\\evil.example/x",
    "%5C%5Cevil.example/x",
    "echo%255Cadmin",
)


def raw_get(
    service: ServiceProcess,
    tenant: Tenant,
    connection_id: str,
    path: str,
    method: str = "GET",
    body: bytes | None = None,
) -> httpx.Response:
    """A request whose target is sent exactly as written (http.client does not normalize
    dot segments, as httpx does)."""
    target = f"/v1/personal-connectors/{connection_id}/proxy/{path}"
    target += f"?organization_id={tenant.organization_id}"
    connection = http.client.HTTPConnection("127.0.0.1", service.port, timeout=30)
    try:
        connection.request(method, target, body=body, headers=tenant.headers)
        answer = connection.getresponse()
        return httpx.Response(answer.status, headers=answer.getheaders(), content=answer.read())
    finally:
        connection.close()


def test_paths_that_could_leave_the_entrys_host_are_refused(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess, upstream: UpstreamApi
) -> None:
    connection_id = connect_to(api, tenant)

    for path in UNSAFE_PATHS:
        response = raw_get(service, tenant, connection_id, path)
        assert is_envelope(response, 400, "VALIDATION_ERROR"), (path, response.text)
        assert response.json()["error"]["details"]["fields"] == ["path"]
    # A double slash right after /proxy/ (`//evil.example`), as a client sends it, and a line
    # break (no route matches a path holding one): refused by the service all the same.
    for path in ("/evil.example/x", "echo/%0d%0aX-Injected:%201"):
        response = raw_get(service, tenant, connection_id, path)
        assert response.status_code in (400, 404), (path, response.text)
        assert response.json()["success"] is False and "x-connectors-proxy" not in response.headers
    # Whatever the method, and with a body: refused before anything is sent.
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        for path in ("../admin", "echo/%2e%2e/admin", "http://evil.example/x", "a@evil/x"):
            response = raw_get(service, tenant, connection_id, path, method, b'{"a": 1}')
            assert is_envelope(response, 400, "VALIDATION_ERROR"), (method, path, response.text)
    assert upstream.seen == []  # nothing was sent

    # What looks alike but stays under the base URL goes through.
    for path in ("echo/a..b/c", "echo/v1/items:batchGet", "echo/%40me", "echo/a@b"):
        response = raw_get(service, tenant, connection_id, path)
        assert response.status_code == 200, (path, response.text)
        assert response.json()["path"] == f"/api/{path}"


def test_host_values_must_match_the_entrys_patterns(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess, upstream: UpstreamApi
) -> None:
    """api_base_url `{instance_url}/api` from provider metadata and `…:{api_port}/api` from an
    integration param: used only while they match, wherever the value came from."""
    meta = connect_to(api, tenant, PROXY_META_KEY)
    for hostile in (
        None,  # the provider sent none
        "https://evil.example/x",
        "http://127.0.0.1:1@evil.example",
        "http://evil.example#",
        "javascript:alert(1)",
        f"{upstream.url}/",
    ):
        metadata = {} if hostile is None else {"instance_url": hostile}
        update_connection(service, meta, provider_metadata=metadata)
        response = proxied(api, tenant, meta, "echo")
        assert is_envelope(response, 400, "VALIDATION_ERROR"), (hostile, response.text)
        assert "instance_url" in response.json()["error"]["system_message"]
        assert hostile is None or hostile not in response.text  # named, never shown
    update_connection(service, meta, provider_metadata={"instance_url": upstream.url})
    assert proxied(api, tenant, meta, "echo").json()["path"] == "/api/echo"

    port = connect_to(api, tenant, PROXY_PORT_KEY)
    assert proxied(api, tenant, port, "echo").json()["path"] == "/api/echo"  # the default
    for hostile in ("1@evil.example", "80/x", "8080#", ""):
        update_connection(service, port, integration_params={"api_port": hostile})
        response = proxied(api, tenant, port, "echo")
        assert is_envelope(response, 400, "VALIDATION_ERROR"), (hostile, response.text)
    assert [seen.path for seen in upstream.seen] == ["/api/echo", "/api/echo"]


def test_host_values_aimed_at_a_listening_server_send_it_nothing(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess, upstream: UpstreamApi
) -> None:
    """Provider metadata that names the test's own upstream (which would answer) but with
    more than the pattern admits — a path, a query, credentials, a backslash, whitespace —
    is refused before anything is sent."""
    meta = connect_to(api, tenant, PROXY_META_KEY)
    host = f"127.0.0.1:{upstream.port}"
    for hostile in (
        f"http://{host}/api/echo/sneaked#",
        f"http://{host}/../",
        f"http://{host}?x=",
        f"http://user:pass@{host}",
        f"http://{host}\\@evil.example",
        f"http://{host}%2F",
        f"http://{host}\n",
        f" http://{host}",
        f"HTTP://{host}",
    ):
        update_connection(service, meta, provider_metadata={"instance_url": hostile})
        response = proxied(api, tenant, meta, "echo")
        assert is_envelope(response, 400, "VALIDATION_ERROR"), (hostile, response.text)
    assert upstream.seen == []  # nothing was sent
    update_connection(service, meta, provider_metadata={"instance_url": f"http://{host}"})
    assert proxied(api, tenant, meta, "echo").status_code == 200  # the same host, as admitted
    assert len(upstream.seen) == 1


def test_a_redirect_to_an_internal_address_comes_back_unfollowed(
    api: httpx.Client, tenant: Tenant, upstream: UpstreamApi
) -> None:
    connection_id = connect_to(api, tenant)
    for internal in (f"{upstream.url}/api/echo/followed", "http://169.254.169.254/latest/"):
        moved = proxied(api, tenant, connection_id, "redirect", params={"to": internal})
        assert moved.status_code == 302, moved.text
        assert moved.headers["location"] == internal
        assert moved.headers["x-connectors-proxy"] == "upstream"
    assert [seen.path for seen in upstream.seen] == ["/api/redirect"] * 2  # none followed


@pytest.fixture
def strict_process(service: ServiceProcess, tmp_path: Path) -> Iterator[ServiceProcess]:
    """Another server on the same database with the production outbound rule: no internal
    destinations, but plain http to this machine's loopback (the tests' provider is there)."""
    env = {
        **service.env,
        "CONNECTORS_OUTBOUND_ALLOW_INTERNAL": "false",
        "CONNECTORS_ALLOW_HTTP_LOOPBACK": "true",
    }
    process = ServiceProcess(free_port(), env, tmp_path / "strict.log").start()
    yield process
    process.stop()


def test_a_host_from_metadata_must_be_https_at_a_public_address(
    api: httpx.Client,
    tenant: Tenant,
    service: ServiceProcess,
    strict_process: ServiceProcess,
    upstream: UpstreamApi,
) -> None:
    """The entry's pattern admits these values; the outbound rule does not."""
    connection_id = connect_to(api, tenant, PROXY_META_KEY)
    with web.client(base_url=strict_process.api, timeout=30) as strict:
        for internal in (
            "https://10.0.0.1",
            "https://169.254.169.254",
            "http://192.168.1.10:8080",
            "https://0.0.0.0",
            "http://example.com",  # public, but not https
        ):
            update_connection(service, connection_id, provider_metadata={"instance_url": internal})
            response = proxied(strict, tenant, connection_id, "echo")
            assert is_envelope(response, 400, "VALIDATION_ERROR"), (internal, response.text)
        # CONNECTORS_ALLOW_HTTP_LOOPBACK: this machine's loopback over http, and only that.
        update_connection(service, connection_id, provider_metadata={"instance_url": upstream.url})
        response = proxied(strict, tenant, connection_id, "echo")
        assert response.status_code == 200, response.text
    assert len(upstream.seen) == 1


def test_end_users_reach_only_their_own_connections(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess, upstream: UpstreamApi
) -> None:
    platform = make_organization_key(service, tenant.organization_id)
    alice, bob = platform.acting_for("alice@example.test"), platform.acting_for("bob")
    alices = connect_to(api, alice)
    bobs = connect_to(api, bob)

    response = proxied(api, alice, alices, "echo", params={"q": "1"})
    assert response.status_code == 200, response.text
    assert response.json()["query"] == "q=1"  # end_user_id stays here
    assert is_envelope(proxied(api, alice, bobs, "echo"), 404, "RESOURCE_NOT_FOUND")
    assert is_envelope(proxied(api, bob, alices, "echo"), 404, "RESOURCE_NOT_FOUND")
    stranger = platform.acting_for("carol")
    assert is_envelope(proxied(api, stranger, alices, "echo"), 404, "RESOURCE_NOT_FOUND")
    # A service key must name its end user; a user key of the organization reaches neither.
    nameless = api.get(f"/{alices}/proxy/echo", params=platform.org, headers=platform.headers)
    assert is_envelope(nameless, 400, "VALIDATION_ERROR")
    assert is_envelope(proxied(api, tenant, alices, "echo"), 404, "RESOURCE_NOT_FOUND")
    assert len(upstream.seen) == 1


def test_an_exchanged_token_reaches_its_end_users_connections_only(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess, upstream: UpstreamApi
) -> None:
    """A `pct_` token (token exchange) acts for its end user on the proxy, any method."""
    platform = make_organization_key(service, tenant.organization_id)
    alice, bob = platform.acting_for("alice"), platform.acting_for("bob")
    alices, bobs = connect_to(api, alice), connect_to(api, bob)

    async def mint(session, runtime):  # type: ignore[no-untyped-def]
        # What POST /oauth/token hands out for `audience=personal-connectors` (tests/issuers).
        token, _ = pct.mint(runtime.sealer, tenant.organization_id, "alice", platform.api_key_id)
        return token

    token = service.run_db(mint)
    headers = {"Authorization": f"Bearer {token}"}
    posted = api.post(f"/{alices}/proxy/echo", headers=headers, content=b"hi")
    assert posted.status_code == 200, posted.text
    assert posted.json()["body"] == "hi"
    assert api.get(f"/{bobs}/proxy/echo", headers=headers).status_code == 404
