"""A service (SQLite and PostgreSQL) whose catalog has a connector with an MCP server: the
tests' real OpenID provider as the authorization server, and a real MCP server
(tests/support/mcp_server.py) that accepts the provider's access tokens."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import yaml

from personal_connectors.apps.service import OAuthAppService
from tests.conftest import BACKENDS, CLIENT_ID, CLIENT_SECRET, Tenant
from tests.support.mcp_server import McpServer
from tests.support.oidc import OidcProvider, free_port
from tests.support.service import ServiceProcess, running_service, service_env

MCP_KEY = "mcp-oidc"  # a connector whose provider runs an MCP server
PLAIN_KEY = "plain-oidc"  # the same provider without one
DOWN_KEY = "down-mcp"  # an MCP server nobody listens at
KEYED_KEY = "keyed-mcp"  # an API-key connector whose server takes the key (SPEC §10)
SCOPES = ["openid", "email", "profile", "offline_access"]


@pytest.fixture(scope="session")
def mcp_ports() -> dict[str, int]:
    return {backend: free_port() for backend in BACKENDS}


@pytest.fixture(scope="session")
def mcp_oidc(
    tmp_path_factory: pytest.TempPathFactory, mcp_ports: dict[str, int]
) -> Iterator[OidcProvider]:
    client = {
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "redirect_uris": [
            f"http://127.0.0.1:{port}/v1/personal-connectors/callback"
            for port in mcp_ports.values()
        ],
        "grant_types": ["authorization_code", "refresh_token"],
        "token_endpoint_auth_method": "client_secret_basic",
    }
    provider = OidcProvider.start([client], workdir=tmp_path_factory.mktemp("mcp-oidc"))
    yield provider
    provider.stop()


@pytest.fixture(scope="session")
def mcp_server(mcp_oidc: OidcProvider) -> Iterator[McpServer]:
    server = McpServer(mcp_oidc, CLIENT_ID, CLIENT_SECRET, page_size=2).start()
    yield server
    server.stop()


@pytest.fixture
def upstream(mcp_server: McpServer) -> Iterator[McpServer]:
    """The MCP server, its counts starting from zero; what a test made it refuse is undone
    after it, for the tests that use the server without this fixture."""
    mcp_server.reset()
    yield mcp_server
    mcp_server.reset()


def _entry(oidc: OidcProvider, name: str, mcp_url: str | None) -> dict[str, object]:
    entry: dict[str, object] = {
        "display_name": name,
        "discovery_url": oidc.discovery_url,
        "default_scopes": SCOPES,
        # oidc-provider grants offline_access (a refresh token) only with prompt=consent.
        "authorization_params": {"prompt": "consent"},
    }
    if mcp_url is not None:
        entry["mcp"] = {"url": mcp_url}
    return entry


@pytest.fixture(scope="session", params=BACKENDS)
def mcp_service(
    request: pytest.FixtureRequest,
    mcp_oidc: OidcProvider,
    mcp_server: McpServer,
    mcp_ports: dict[str, int],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ServiceProcess]:
    backend: str = request.param
    workdir = tmp_path_factory.mktemp(f"mcp-service-{backend}")
    port = mcp_ports[backend]
    providers = workdir / "providers.yaml"
    providers.write_text(
        yaml.safe_dump(
            {
                MCP_KEY: _entry(mcp_oidc, "MCP OIDC", mcp_server.url),
                PLAIN_KEY: _entry(mcp_oidc, "Plain OIDC", None),
                DOWN_KEY: _entry(mcp_oidc, "Down MCP", f"http://127.0.0.1:{free_port()}/mcp"),
                KEYED_KEY: {
                    "display_name": "Keyed MCP",
                    "auth_mode": "api_key",
                    "credentials": [{"name": "api_key", "label": "API key", "secret": True}],
                    # Sent as the entry says: the MCP server checks it as its bearer token.
                    "api_auth": {"headers": {"Authorization": "Bearer {api_key}"}},
                    # Any answer proves nothing about the key here; the MCP server checks it.
                    "test_request": {"url": mcp_oidc.discovery_url},
                    "mcp": {"url": mcp_server.url},
                },
            }
        )
    )
    env = service_env(
        workdir,
        port,
        CONNECTORS_PROVIDERS_FILE=str(providers),
        CONNECTORS_LOG_LEVEL="DEBUG",
        CONNECTORS_PROVIDER_TIMEOUT_SECONDS="5",
    )

    async def configure(session, runtime):  # type: ignore[no-untyped-def]
        apps = OAuthAppService(session, runtime.sealer, runtime.catalog)
        for key in (MCP_KEY, PLAIN_KEY, DOWN_KEY):
            await apps.configure(None, key, client_id=CLIENT_ID, client_secret=CLIENT_SECRET)

    with running_service(backend, port, env, workdir / "service.log") as proc:
        proc.run_db(configure)
        yield proc


@pytest.fixture
def service_under_test(mcp_service: ServiceProcess) -> ServiceProcess:
    """``tenant``, ``other_tenant`` and ``api`` (tests/conftest.py) are this service's here."""
    return mcp_service


def keyed_connection(api: httpx.Client, caller: Tenant, upstream: McpServer) -> str:
    """A connection of the api-key entry (SPEC §10) whose key the upstream server accepts."""
    key = f"kk_{caller.user_id[-12:]}"
    upstream.api_keys.add(key)
    created = api.post(
        "/credentials",
        params=caller.org,
        headers=caller.headers,
        json={"connector_type": KEYED_KEY, "credentials": {"api_key": key}},
    )
    assert created.status_code == 201, created.text
    return str(created.json()["id"])
