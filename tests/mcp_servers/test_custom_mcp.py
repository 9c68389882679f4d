"""Any remote MCP server (`custom_mcp`, SPEC §11): the service follows the MCP authorization
spec against a real OpenID provider (dynamic client registration, resource indicators, PKCE)
protecting real MCP servers built on the official SDK, which accept only JWTs whose audience
is themselves. Both databases (`mcp_service`)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import httpx2
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from sqlalchemy import func, select

from personal_connectors.models import Connection, ConnectionEvent, McpClientRegistration, utcnow
from tests.conftest import Tenant, make_tenant
from tests.flows.conftest import follow_callback
from tests.support import web
from tests.support.oidc import OidcProvider, free_port, login_and_consent
from tests.support.platform import OrganizationKey, make_organization_key
from tests.support.protected_mcp_server import TOOLS, ProtectedMcpServer
from tests.support.service import TEST_ENCRYPTION_KEY, ServiceProcess
from tests.tokens.conftest import run_refresher_once

Caller = Tenant | OrganizationKey
TOOL_NAMES = [tool.name for tool in TOOLS]


@pytest.fixture(scope="session")
def dcr_oidc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcProvider]:
    """An authorization server with no client configured: MCP clients register themselves."""
    provider = OidcProvider.start(
        [],
        workdir=tmp_path_factory.mktemp("dcr-oidc"),
        features={"registration": True, "resource_indicators": True},
    )
    yield provider
    provider.stop()


@pytest.fixture(scope="session")
def servers(dcr_oidc: OidcProvider) -> Iterator[dict[str, ProtectedMcpServer]]:
    made = {
        "main": ProtectedMcpServer("Custom Test", dcr_oidc),
        "second": ProtectedMcpServer("Second Server", dcr_oidc),
        "open": ProtectedMcpServer("Open Tools", None),
        # Its metadata describes another resource (a path of its own it does not serve).
        "wrong_resource": ProtectedMcpServer("Liar", dcr_oidc, advertised_resource="/other"),
        # It names the provider by another spelling, whose metadata names the real issuer.
        "wrong_issuer": ProtectedMcpServer(
            "Other Issuer", dcr_oidc, advertised_issuer=f"http://localhost:{dcr_oidc.port}"
        ),
    }
    for server in made.values():
        server.start()
    yield made
    for server in made.values():
        server.stop()


BOUND_CLIENT = {"client_id": "registered-by-hand", "client_secret": "its-secret-by-hand"}


@pytest.fixture(scope="session")
def bound_server(
    tmp_path_factory: pytest.TempPathFactory, mcp_ports: dict[str, int]
) -> Iterator[ProtectedMcpServer]:
    """A server whose authorization server offers no dynamic registration: one client,
    registered by hand for the services' callbacks."""
    client = {
        **BOUND_CLIENT,
        "redirect_uris": [
            f"http://127.0.0.1:{port}/v1/personal-connectors/callback"
            for port in mcp_ports.values()
        ],
        "grant_types": ["authorization_code", "refresh_token"],
        "token_endpoint_auth_method": "client_secret_post",
    }
    oidc = OidcProvider.start(
        [client],
        workdir=tmp_path_factory.mktemp("bound-oidc"),
        features={"resource_indicators": True},
    )
    server = ProtectedMcpServer("Bound Tools", oidc)
    server.start()
    yield server
    server.stop()
    oidc.stop()


@pytest.fixture(scope="session")
def public_oidc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcProvider]:
    """An authorization server that registers public clients only (no secret: PKCE)."""
    oidc = OidcProvider.start(
        [],
        workdir=tmp_path_factory.mktemp("public-oidc"),
        features={"registration": True, "resource_indicators": True, "public_clients_only": True},
    )
    yield oidc
    oidc.stop()


@pytest.fixture(scope="session")
def public_server(public_oidc: OidcProvider) -> Iterator[ProtectedMcpServer]:
    server = ProtectedMcpServer("Public Tools", public_oidc)
    server.start()
    yield server
    server.stop()


def authorize(
    api: httpx.Client, caller: Caller, url: str, params: dict[str, str] | None = None, **body: Any
) -> httpx.Response:
    return api.post(
        "/authorize",
        params=params or caller.org,
        headers=caller.headers,
        json={"connector_type": "custom_mcp", "mcp_server_url": url, **body},
    )


def connect(
    api: httpx.Client,
    caller: Caller,
    url: str,
    login: str,
    params: dict[str, str] | None = None,
    **body: Any,
) -> str:
    response = authorize(api, caller, url, params, **body)
    assert response.status_code == 200, response.text
    started = response.json()
    assert started["authorization_url"] and started["state_token"]
    callback = follow_callback(login_and_consent(started["authorization_url"], login=login))
    assert callback.status_code == 200, callback.text
    return str(callback.json()["data"]["connection_id"])


def listed(api: httpx.Client, caller: Caller, params: dict[str, str] | None = None) -> list[Any]:
    response = api.get("/", params=params or caller.org, headers=caller.headers)
    assert response.status_code == 200, response.text
    return list(response.json())


def registrations_of(service: ServiceProcess, organization_id: str) -> int:
    async def count(session, runtime):  # type: ignore[no-untyped-def]
        statement = select(func.count()).where(
            McpClientRegistration.organization_id == organization_id
        )
        return (await session.execute(statement)).scalar_one()

    return int(service.run_db(count))


def event_types(service: ServiceProcess, connection_id: str) -> list[str]:
    async def read(session, runtime):  # type: ignore[no-untyped-def]
        statement = select(ConnectionEvent.type).where(
            ConnectionEvent.connection_id == connection_id
        )
        return list((await session.execute(statement)).scalars())

    return list(service.run_db(read))


def gateway_session(
    service: ServiceProcess, caller: Tenant, work: Any, connection_id: str | None = None
) -> Any:
    query = "&".join(f"{name}={value}" for name, value in caller.org.items())
    path = f"/{connection_id}/mcp" if connection_id else "/mcp"

    async def run() -> Any:
        async with (
            httpx2.AsyncClient(headers=caller.headers, timeout=30) as client,
            streamable_http_client(f"{service.api}{path}?{query}", http_client=client) as (r, w),
            ClientSession(r, w) as session,
        ):
            await session.initialize()
            return await work(session)

    return asyncio.run(run())


def test_a_protected_server_is_connected_through_its_own_authorization_server(
    api: httpx.Client,
    mcp_service: ServiceProcess,
    tenant: Tenant,
    dcr_oidc: OidcProvider,
    servers: dict[str, ProtectedMcpServer],
) -> None:
    main = servers["main"]
    registered_before = len(dcr_oidc.registrations())

    connection_id = connect(api, tenant, main.url, login="alice")

    (item,) = [c for c in listed(api, tenant) if c["id"] == connection_id]
    assert item["connector_type"] == item["app_key"] == "custom_mcp"
    assert item["mcp_server_url"] == main.url
    assert item["display_name"] == "Custom Test"  # the server's serverInfo.name
    assert item["account_id"] == "alice"  # the ID token's subject
    assert item["status"] == "active"
    # One registration, for the service's callback, stored sealed for the organization.
    (registration,) = dcr_oidc.registrations()[registered_before:]
    assert registration["redirect_uris"] == [
        f"{mcp_service.base_url}/v1/personal-connectors/callback"
    ]
    assert registrations_of(mcp_service, tenant.organization_id) == 1

    tools = api.get(f"/{connection_id}/tools", params=tenant.org, headers=tenant.headers)
    assert tools.status_code == 200, tools.text
    assert [tool["name"] for tool in tools.json()["data"]] == TOOL_NAMES

    async def use(session: ClientSession) -> tuple[list[str], Any]:
        names = [tool.name for tool in (await session.list_tools()).tools]
        return names, await session.call_tool("custom-test__whoami", {})

    names, result = gateway_session(mcp_service, tenant, use)
    assert names == [f"custom-test__{name}" for name in TOOL_NAMES]
    assert result.is_error is False
    # The token the server got was issued for it (RFC 8707 audience), to alice.
    assert result.content[0].text == f"alice at {main.url}"
    assert main.calls["tools/call whoami"] >= 1

    token = api.post(f"/{connection_id}/token", params=tenant.org, headers=tenant.headers)
    assert token.status_code == 200, token.text
    assert token.json()["app_key"] == "custom_mcp"
    tested = api.post(f"/{connection_id}/test", params=tenant.org, headers=tenant.headers)
    assert tested.status_code == 200, tested.text
    assert tested.json()["status"] == "healthy"
    assert tested.json()["details"]["serverUrl"] == main.url
    assert tested.json()["details"]["availableTools"] == len(TOOLS)


def test_the_registration_is_reused_in_the_organization_and_never_across_servers_or_orgs(
    api: httpx.Client,
    mcp_service: ServiceProcess,
    tenant: Tenant,
    other_tenant: Tenant,
    dcr_oidc: OidcProvider,
    servers: dict[str, ProtectedMcpServer],
) -> None:
    main, second = servers["main"], servers["second"]
    before = len(dcr_oidc.registrations())
    connect(api, tenant, main.url, login="alice")
    # Another user of the same organization: an end user of its service key.
    service_key = make_organization_key(mcp_service, tenant.organization_id)
    as_end_user = {"end_user_id": "user-b"}
    end_users = connect(api, service_key, main.url, login="bob", params=as_end_user)
    assert len(dcr_oidc.registrations()) == before + 1  # the provider saw one registration
    (item,) = listed(api, service_key, as_end_user)
    assert (item["id"], item["account_id"], item["end_user_id"]) == (end_users, "bob", "user-b")

    # Another server naming the same authorization server gets a registration of its own.
    connect(api, tenant, second.url, login="alice")
    assert len(dcr_oidc.registrations()) == before + 2
    assert registrations_of(mcp_service, tenant.organization_id) == 2
    # Another organization registers for itself.
    connect(api, other_tenant, main.url, login="alice")
    assert len(dcr_oidc.registrations()) == before + 3
    assert registrations_of(mcp_service, other_tenant.organization_id) == 1

    # One connection per user and server: alice at two servers with one subject.
    mine = {c["mcp_server_url"]: c for c in listed(api, tenant)}
    assert set(mine) == {main.url, second.url}
    assert {c["account_id"] for c in mine.values()} == {"alice"}
    # Each token is for its own server (RFC 8707): the other server refuses it.
    token = api.post(f"/{mine[main.url]['id']}/token", params=tenant.org, headers=tenant.headers)
    refused_before = second.calls["refused"]
    elsewhere = web.post(
        second.url,
        json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
        headers={
            "Authorization": f"Bearer {token.json()['access_token']}",
            "Accept": "application/json, text/event-stream",
        },
    )
    assert elsewhere.status_code == 401
    assert second.calls["refused"] == refused_before + 1
    # The same account again at the same server updates its connection.
    again = connect(api, tenant, main.url, login="alice", display_name="Renamed")
    assert again == mine[main.url]["id"]
    assert len(listed(api, tenant)) == 2

    async def names(session: ClientSession) -> list[str]:
        return [tool.name for tool in (await session.list_tools()).tools]

    shown = gateway_session(mcp_service, tenant, names)
    assert set(shown) == {
        f"{prefix}__{name}" for prefix in ("custom-test", "second-server") for name in TOOL_NAMES
    }


def test_connections_sharing_a_display_name_get_the_connection_suffix(
    api: httpx.Client,
    mcp_service: ServiceProcess,
    tenant: Tenant,
    servers: dict[str, ProtectedMcpServer],
) -> None:
    first = connect(api, tenant, servers["main"].url, login="alice", display_name="Tools")
    second = connect(api, tenant, servers["second"].url, login="alice", display_name="Tools")

    async def names(session: ClientSession) -> list[str]:
        return [tool.name for tool in (await session.list_tools()).tools]

    shown = set(gateway_session(mcp_service, tenant, names))
    # First offered together: each gets its id's digits (as before prefixes were stored).
    assert shown == {
        f"tools_{connection[5:11]}__{name}" for connection in (first, second) for name in TOOL_NAMES
    }


def test_an_app_an_administrator_binds_is_used_where_registration_is_not_offered(
    api: httpx.Client,
    mcp_service: ServiceProcess,
    tenant: Tenant,
    bound_server: ProtectedMcpServer,
    servers: dict[str, ProtectedMcpServer],
) -> None:
    url = bound_server.url
    refused = authorize(api, tenant, url)
    assert refused.status_code == 400, refused.text
    assert "no dynamic client registration" in refused.text
    assert "PUT /apps/custom_mcp" in refused.text

    bind = {
        "mcp_server_url": url,
        **BOUND_CLIENT,
        "token_endpoint_auth_method": "client_secret_post",
    }

    def put_app(**changes: str) -> httpx.Response:
        return api.put(
            "/apps/custom_mcp", params=tenant.org, headers=tenant.headers, json={**bind, **changes}
        )

    bound = put_app()
    assert bound.status_code == 200, bound.text
    app = bound.json()
    assert app["client_id"] == BOUND_CLIENT["client_id"] and app["mcp_server_url"] == url
    assert app["redirect_uri"] == f"{mcp_service.base_url}/v1/personal-connectors/callback"
    assert BOUND_CLIENT["client_secret"] not in bound.text
    listed_apps = api.get("/apps/custom_mcp", params=tenant.org, headers=tenant.headers)
    assert listed_apps.status_code == 200, listed_apps.text
    assert [a["client_id"] for a in listed_apps.json()["data"]] == [BOUND_CLIENT["client_id"]]
    assert BOUND_CLIENT["client_secret"] not in listed_apps.text
    # A server that needs no authorization takes no app.
    open_server = put_app(mcp_server_url=servers["open"].url)
    assert open_server.status_code == 400, open_server.text

    started = authorize(api, tenant, url).json()
    sent = dict(parse_qsl(urlsplit(started["authorization_url"]).query))
    assert sent["client_id"] == BOUND_CLIENT["client_id"]
    connection_id = connect(api, tenant, url, login="carol")

    async def whoami(session: ClientSession) -> Any:
        return await session.call_tool("bound-tools__whoami", {})

    result = gateway_session(mcp_service, tenant, whoami)
    assert result.content[0].text == f"carol at {url}"  # a token for this server, to carol
    # The bound secret works at the token endpoint too (a refresh, sent with client_secret_post).
    refreshed = api.post(
        f"/{connection_id}/token",
        params={**tenant.org, "force_refresh": "true"},
        headers=tenant.headers,
    )
    assert refreshed.status_code == 200, refreshed.text

    # The connection's tokens belong to this client: no other client, and no unbinding, while
    # it lives; the same client with a new secret is fine.
    other = put_app(client_id="another-client")
    assert other.status_code == 409, other.text
    assert other.json()["error"]["details"] == {"connections": 1}
    unbind = {**tenant.org, "mcp_server_url": url}
    assert api.delete("/apps/custom_mcp", params=unbind, headers=tenant.headers).status_code == 409
    rotated = put_app()
    assert rotated.status_code == 200, rotated.text

    deleted = api.delete(f"/{connection_id}", params=tenant.org, headers=tenant.headers)
    assert deleted.status_code in (200, 204), deleted.text
    gone = api.delete("/apps/custom_mcp", params=unbind, headers=tenant.headers)
    assert gone.status_code == 204, gone.text
    assert authorize(api, tenant, url).status_code == 400  # back to needing registration
    again = api.delete("/apps/custom_mcp", params=unbind, headers=tenant.headers)
    assert again.status_code == 404, again.text
    assert (
        api.get("/apps/custom_mcp", params=tenant.org, headers=tenant.headers).json()["data"] == []
    )


def test_an_authorization_server_that_registers_only_public_clients_is_used_with_pkce(
    api: httpx.Client,
    mcp_service: ServiceProcess,
    tenant: Tenant,
    public_oidc: OidcProvider,
    public_server: ProtectedMcpServer,
) -> None:
    url = public_server.url
    connection_id = connect(api, tenant, url, login="dana")

    (registration,) = [
        r
        for r in public_oidc.registrations()
        if r["redirect_uris"] == [f"{mcp_service.base_url}/v1/personal-connectors/callback"]
    ]
    assert registration["token_endpoint_auth_method"] == "none"

    async def whoami(session: ClientSession) -> Any:
        return await session.call_tool("public-tools__whoami", {})

    assert gateway_session(mcp_service, tenant, whoami).content[0].text == f"dana at {url}"
    # The refresh token works for the public client (the client id alone, no secret).
    refreshed = api.post(
        f"/{connection_id}/token",
        params={**tenant.org, "force_refresh": "true"},
        headers=tenant.headers,
    )
    assert refreshed.status_code == 200, refreshed.text
    deleted = api.delete(f"/{connection_id}", params=tenant.org, headers=tenant.headers)
    assert deleted.status_code in (200, 204), deleted.text
    assert "connection.revoked" in event_types(mcp_service, connection_id)


def test_a_server_that_needs_no_authorization_is_connected_at_once(
    api: httpx.Client,
    mcp_service: ServiceProcess,
    tenant: Tenant,
    servers: dict[str, ProtectedMcpServer],
) -> None:
    open_server = servers["open"]

    response = authorize(api, tenant, open_server.url)

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["connected"] is True and body["authorization_url"] is None
    connection = body["connection"]
    assert connection["mcp_server_url"] == open_server.url
    assert connection["display_name"] == "Open Tools"
    assert connection["account_id"] == open_server.url
    assert [c["id"] for c in listed(api, tenant)] == [connection["id"]]
    again = authorize(api, tenant, open_server.url).json()
    assert again["connection"]["id"] == connection["id"]  # one connection per user and server

    async def echo(session: ClientSession) -> Any:
        return await session.call_tool("open-tools__echo", {"text": "hi"})

    result = gateway_session(mcp_service, tenant, echo)
    assert (result.is_error, result.content[0].text) == (False, "hi")

    async def plain_echo(session: ClientSession) -> Any:  # `/{id}/mcp`: the server's own names
        return await session.call_tool("echo", {"text": "alone"})

    result = gateway_session(mcp_service, tenant, plain_echo, connection_id=connection["id"])
    assert (result.is_error, result.content[0].text) == (False, "alone")
    token = api.post(f"/{connection['id']}/token", params=tenant.org, headers=tenant.headers)
    assert token.status_code == 200, token.text
    assert token.json()["access_token"] is None

    deleted = api.delete(f"/{connection['id']}", params=tenant.org, headers=tenant.headers)
    assert deleted.status_code == 204
    assert listed(api, tenant) == []


@pytest.mark.parametrize(
    ("server", "reason"),
    [
        ("wrong_resource", "describes another resource than the MCP server"),
        ("wrong_issuer", "issuer does not match"),
    ],
)
def test_a_server_whose_metadata_does_not_hold_is_refused_and_nothing_is_stored(
    api: httpx.Client,
    mcp_service: ServiceProcess,
    tenant: Tenant,
    dcr_oidc: OidcProvider,
    servers: dict[str, ProtectedMcpServer],
    server: str,
    reason: str,
) -> None:
    before = len(dcr_oidc.registrations())

    response = authorize(api, tenant, servers[server].url)

    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert error["details"]["fields"] == ["mcp_server_url"]
    assert reason in error["system_message"]
    assert len(dcr_oidc.registrations()) == before
    assert registrations_of(mcp_service, tenant.organization_id) == 0
    assert listed(api, tenant) == []


def test_a_token_the_server_refuses_is_refreshed_exactly_once(
    api: httpx.Client,
    mcp_service: ServiceProcess,
    tenant: Tenant,
    dcr_oidc: OidcProvider,
    servers: dict[str, ProtectedMcpServer],
) -> None:
    main = servers["main"]
    connection_id = connect(api, tenant, main.url, login="carol")

    def token() -> str:
        answer = api.post(f"/{connection_id}/token", params=tenant.org, headers=tenant.headers)
        assert answer.status_code == 200, answer.text
        return str(answer.json()["access_token"])

    before = token()
    main.refused_tokens.add(before)
    refreshes = len(dcr_oidc.refresh_grants())

    async def whoami(session: ClientSession) -> Any:
        return await session.call_tool("custom-test__whoami", {})

    result = gateway_session(mcp_service, tenant, whoami)

    assert result.is_error is False, result.content
    assert result.content[0].text == f"carol at {main.url}"
    grants = dcr_oidc.refresh_grants()[refreshes:]
    assert [grant["status"] for grant in grants] == [200]  # one refresh, with the resource
    assert token() != before

    deleted = api.delete(f"/{connection_id}", params=tenant.org, headers=tenant.headers)
    assert deleted.status_code == 204
    assert (
        api.delete(f"/{connection_id}", params=tenant.org, headers=tenant.headers).status_code
        == 404
    )
    # Revoked at the authorization server (RFC 7009) with the registration's credentials.
    assert "connection.revoked" in event_types(mcp_service, connection_id)


def test_other_connectors_take_no_mcp_server_url_and_custom_mcp_needs_one(
    api: httpx.Client, tenant: Tenant
) -> None:
    other = api.post(
        "/authorize",
        params=tenant.org,
        headers=tenant.headers,
        json={"connector_type": "mcp-oidc", "mcp_server_url": "https://mcp.example.com/mcp"},
    )
    assert other.status_code == 400, other.text
    assert other.json()["error"]["details"]["fields"] == ["mcp_server_url"]
    missing = api.post(
        "/authorize",
        params=tenant.org,
        headers=tenant.headers,
        json={"connector_type": "custom_mcp"},
    )
    assert missing.status_code == 400, missing.text
    assert missing.json()["error"]["details"]["fields"] == ["mcp_server_url"]


@pytest.fixture(scope="module")
def production_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """The outbound rule as in production: https at public addresses only."""
    workdir = tmp_path_factory.mktemp("custom-mcp-production")
    port = free_port()
    env = {
        "CONNECTORS_DATA_DIR": str(workdir / "data"),
        "CONNECTORS_BASE_URL": f"http://127.0.0.1:{port}",
        "CONNECTORS_ENCRYPTION_KEYS": TEST_ENCRYPTION_KEY,
        "CONNECTORS_OUTBOUND_ALLOW_INTERNAL": "false",
        "CONNECTORS_ALLOW_HTTP_LOOPBACK": "false",
    }
    service = ServiceProcess(port, env, workdir / "service.log").start()
    yield service
    service.stop()


@pytest.mark.parametrize(
    "url",
    [
        "http://mcp.example.com/mcp",  # not https
        "https://127.0.0.1/mcp",
        "https://localhost:8443/mcp",
        "https://10.0.0.7/mcp",
        "https://[::1]/mcp",
        "https://169.254.169.254/latest",
    ],
)
def test_an_internal_or_plain_http_server_is_refused_under_production_rules(
    production_service: ServiceProcess, url: str
) -> None:
    caller = make_tenant(production_service)
    with web.client(base_url=production_service.api, timeout=30) as api:
        response = authorize(api, caller, url)
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["code"] == "VALIDATION_ERROR"
        assert error["details"]["fields"] == ["mcp_server_url"]
        assert listed(api, caller) == []
    assert registrations_of(production_service, caller.organization_id) == 0


def test_the_launch_page_names_the_server_the_person_is_about_to_connect(
    api: httpx.Client, tenant: Tenant, servers: dict[str, ProtectedMcpServer]
) -> None:
    named = authorize(api, tenant, servers["main"].url, display_name="Acme Tools").json()
    unnamed = authorize(api, tenant, servers["second"].url).json()

    assert "Acme Tools" in web.get(named["launch_url"], timeout=30).text
    assert servers["second"].url in web.get(unnamed["launch_url"], timeout=30).text


def test_explicit_completion_connects_at_complete_oauth(
    api: httpx.Client, tenant: Tenant, servers: dict[str, ProtectedMcpServer]
) -> None:
    started = authorize(api, tenant, servers["second"].url, completion="explicit").json()
    callback = follow_callback(login_and_consent(started["authorization_url"], login="dora"))
    assert callback.status_code == 200, callback.text
    assert listed(api, tenant) == []  # held until complete-oauth

    completed = api.post(
        "/complete-oauth",
        params=tenant.org,
        headers=tenant.headers,
        json={"state_token": started["state_token"]},
    ).json()

    assert completed["connected"] is True
    assert completed["connection"]["app_key"] == "custom_mcp"
    (item,) = listed(api, tenant)
    assert (item["id"], item["account_id"], item["display_name"]) == (
        completed["connection"]["id"],
        "dora",
        "Second Server",
    )


def test_the_background_refresher_refreshes_a_custom_connection_before_it_expires(
    api: httpx.Client,
    mcp_service: ServiceProcess,
    tenant: Tenant,
    dcr_oidc: OidcProvider,
    servers: dict[str, ProtectedMcpServer],
) -> None:
    main = servers["main"]
    connection_id = connect(api, tenant, main.url, login="erin")

    def token() -> str:
        answer = api.post(f"/{connection_id}/token", params=tenant.org, headers=tenant.headers)
        assert answer.status_code == 200, answer.text
        return str(answer.json()["access_token"])

    before = token()

    async def expire_soon(session, runtime):  # type: ignore[no-untyped-def]
        connection = await session.get(Connection, connection_id)
        connection.expires_at = utcnow() + timedelta(seconds=60)  # inside the window
        connection.refresh_due_at = None
        await session.commit()

    mcp_service.run_db(expire_soon)
    refreshes = len(dcr_oidc.refresh_grants())

    counts = run_refresher_once(mcp_service, tenant.organization_id)

    assert counts["refreshed"] == 1, counts
    # Sent with the registration's client and the server as the resource (RFC 8707): the
    # provider took it, and the new token is one the server accepts.
    grants = dcr_oidc.refresh_grants()[refreshes:]
    assert [grant["status"] for grant in grants] == [200]
    after = token()
    assert after != before
    assert "connection.refreshed" in event_types(mcp_service, connection_id)

    async def whoami(session: ClientSession) -> Any:
        return await session.call_tool("custom-test__whoami", {})

    result = gateway_session(mcp_service, tenant, whoami)
    assert (result.is_error, result.content[0].text) == (False, f"erin at {main.url}")
    # Nothing more is due: a second pass refreshes nothing.
    assert run_refresher_once(mcp_service, tenant.organization_id)["refreshed"] == 0
