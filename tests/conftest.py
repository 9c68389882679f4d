"""Shared fixtures: a real OpenID provider, the service on SQLite and on PostgreSQL, tenants.

Every test that takes ``service`` runs twice, once per database backend, against a real
``connectors serve`` process over loopback sockets.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from personal_connectors.apps.service import OAuthAppService
from personal_connectors.identity.service import IdentityService
from personal_connectors.models import Role
from tests.support import outputs, web
from tests.support.credentials_api import CredentialsApi
from tests.support.fake_provider import FakeProvider, fake_provider_entries
from tests.support.fault_proxy import FaultProxy
from tests.support.grants import GrantProviders, start_grant_providers
from tests.support.minting_servers import MachineSecrets, MintingServers, start_machine_oidc
from tests.support.oidc import OidcProvider, free_port
from tests.support.service import ServiceProcess, running_service, service_env
from tests.support.upstream_api import PROXY_KEYS, UpstreamApi, proxy_entries

BACKENDS = ("sqlite", "postgres")
CLIENT_ID = "pc-test-client"
CLIENT_SECRET = "pc-test-secret-value-0123456789"
RETURN_ORIGIN = "https://app.example.test"
PROVIDER_KEY = "local-oidc"
FAULTY_KEY = "faulty-oidc"
# The local provider declared as one that drops `state` (like ClickUp): flows are browser-bound.
STATELESS_KEY = "stateless-oidc"
# Like the built-in generic `oidc` entry: where the issuer is (its port here) is an admin-set
# integration param.
TENANT_OIDC_KEY = "tenant-oidc"
# The local provider with a value each connection's caller chooses (like a Zendesk subdomain).
MEMBER_PARAM_KEY = "member-oidc"


@pytest.fixture(scope="session", autouse=True)
def no_secret_in_any_output() -> Iterator[None]:
    """At the session's end (each xdist worker's): no secret issued during the session — codes,
    PKCE verifiers, ID tokens, every access and refresh token, client secrets, API keys, webhook
    secrets — in the output of any process the tests started (tests/support/outputs.py). Set up
    before every other session fixture, it checks after they have all stopped."""
    yield
    leaks = outputs.RECORD.leaks()
    assert not leaks, "secrets in process output:\n" + "\n".join(leaks)


@pytest.fixture(scope="session")
def service_ports() -> dict[str, int]:
    """Each backend's service, and the one tests/telemetry runs beside it (``BACKEND-observed``):
    all of them redirect URIs the OpenID provider knows."""
    return {name: free_port() for b in BACKENDS for name in (b, f"{b}-observed")}


@pytest.fixture(scope="session")
def oidc(
    tmp_path_factory: pytest.TempPathFactory, service_ports: dict[str, int]
) -> Iterator[OidcProvider]:
    redirect_uris = [
        f"http://127.0.0.1:{port}/v1/personal-connectors/callback"
        for port in service_ports.values()
    ]
    clients = [
        {
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "redirect_uris": redirect_uris,
            "grant_types": ["authorization_code", "refresh_token"],
            "token_endpoint_auth_method": "client_secret_basic",
        }
    ]
    provider = OidcProvider.start(clients, workdir=tmp_path_factory.mktemp("oidc"))
    yield provider
    provider.stop()


def local_provider_entry(oidc: OidcProvider) -> dict[str, object]:
    return {
        "display_name": "Local OIDC",
        "category": "identity",
        "discovery_url": oidc.discovery_url,
        "default_scopes": ["openid", "email", "profile", "offline_access"],
        # oidc-provider grants offline_access (a refresh token) only with prompt=consent.
        "authorization_params": {"prompt": "consent"},
    }


def faulty_provider_entry(oidc: OidcProvider, proxy: FaultProxy) -> dict[str, object]:
    """The same provider, but token, identity and revocation calls go through the fault proxy."""
    metadata = oidc.metadata
    via_proxy = {
        name: proxy.url + metadata[name].removeprefix(oidc.issuer)
        for name in ("token_endpoint", "userinfo_endpoint", "revocation_endpoint")
    }
    return {
        "display_name": "Faulty OIDC",
        "issuer": oidc.issuer,
        "authorization_url": metadata["authorization_endpoint"],
        "token_url": via_proxy["token_endpoint"],
        "revocation_url": via_proxy["revocation_endpoint"],
        "userinfo": {"url": via_proxy["userinfo_endpoint"]},
        "default_scopes": ["openid", "email", "profile", "offline_access"],
        "authorization_params": {"prompt": "consent"},
    }


def write_providers_file(
    path: Path, oidc: OidcProvider, proxy: FaultProxy, extra: dict[str, object] | None = None
) -> Path:
    entries = {
        PROVIDER_KEY: local_provider_entry(oidc),
        FAULTY_KEY: faulty_provider_entry(oidc, proxy),
        STATELESS_KEY: {
            **local_provider_entry(oidc),
            "display_name": "Stateless OIDC",
            "returns_state": False,
        },
        TENANT_OIDC_KEY: {
            **local_provider_entry(oidc),
            "display_name": "Tenant OIDC",
            "discovery_url": "http://127.0.0.1:{issuer_port}/.well-known/openid-configuration",
            "integration_params": {"issuer_port": {"pattern": r"^[0-9]{1,5}$"}},
        },
        MEMBER_PARAM_KEY: {
            **local_provider_entry(oidc),
            "display_name": "Member OIDC",
            "integration_params": {"workspace": {"pattern": r"^[a-z]{1,20}$"}},
        },
        **(extra or {}),
    }
    path.write_text(yaml.safe_dump(entries))
    return path


@pytest.fixture(scope="session")
def fault_proxy(oidc: OidcProvider) -> Iterator[FaultProxy]:
    proxy = FaultProxy(oidc.issuer)
    yield proxy
    proxy.close()


@pytest.fixture(scope="session")
def grant_providers(
    tmp_path_factory: pytest.TempPathFactory, service_ports: dict[str, int]
) -> Iterator[GrantProviders]:
    """Device-flow and PAR providers (tests/support/grants.py), offered by every service."""
    redirect_uris = [
        f"http://127.0.0.1:{port}/v1/personal-connectors/callback"
        for port in service_ports.values()
    ]
    providers = start_grant_providers(
        CLIENT_ID, CLIENT_SECRET, redirect_uris, tmp_path_factory.mktemp("grants")
    )
    yield providers
    providers.stop()


@pytest.fixture(scope="session")
def fake_provider() -> Iterator[FakeProvider]:
    """Provider quirks no real local server shows (tests/support/fake_provider.py)."""
    fake = FakeProvider(CLIENT_ID, CLIENT_SECRET)
    yield fake
    fake.close()


@pytest.fixture(scope="session")
def credentials_api() -> Iterator[CredentialsApi]:
    """An API taking API keys, basic auth, client credentials and signed JWTs (SPEC §10)."""
    api = CredentialsApi()
    yield api
    api.close()


@pytest.fixture(scope="session")
def machine_secrets() -> MachineSecrets:
    return MachineSecrets()


@pytest.fixture(scope="session")
def machine_oidc(
    tmp_path_factory: pytest.TempPathFactory, machine_secrets: MachineSecrets
) -> Iterator[OidcProvider]:
    """A second oidc-provider, with its client credentials grant on (machine clients only)."""
    provider = start_machine_oidc(machine_secrets, tmp_path_factory.mktemp("machine-oidc"))
    yield provider
    provider.stop()


@pytest.fixture(scope="session")
def minting_servers(
    machine_oidc: OidcProvider, machine_secrets: MachineSecrets
) -> Iterator[MintingServers]:
    """Authlib's RFC 7523 server and the resources that check tokens (SPEC §10)."""
    servers = MintingServers(machine_oidc, machine_secrets).start()
    yield servers
    servers.close()


@pytest.fixture(scope="session")
def upstream_api() -> Iterator[UpstreamApi]:
    """A provider's API behind the proxy's test entries (tests/support/upstream_api.py)."""
    upstream = UpstreamApi().start()
    yield upstream
    upstream.close()


@pytest.fixture(scope="session", params=BACKENDS)
def service(
    request: pytest.FixtureRequest,
    oidc: OidcProvider,
    fault_proxy: FaultProxy,
    grant_providers: GrantProviders,
    fake_provider: FakeProvider,
    credentials_api: CredentialsApi,
    upstream_api: UpstreamApi,
    minting_servers: MintingServers,
    service_ports: dict[str, int],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ServiceProcess]:
    backend: str = request.param
    workdir = tmp_path_factory.mktemp(f"service-{backend}")
    port = service_ports[backend]
    env = service_env(workdir, port) | {
        "CONNECTORS_PROVIDERS_FILE": str(
            write_providers_file(
                workdir / "providers.yaml",
                oidc,
                fault_proxy,
                {
                    **grant_providers.entries(),
                    **fake_provider_entries(fake_provider),
                    **credentials_api.entries(),
                    **minting_servers.entries(),
                    **proxy_entries(upstream_api, local_provider_entry(oidc)),
                },
            )
        ),
        "CONNECTORS_ALLOWED_RETURN_ORIGINS": f"{RETURN_ORIGIN},http://127.0.0.1:{port}",
        "CONNECTORS_LOG_LEVEL": "DEBUG",
        # Short bounds so fault tests finish quickly; the defaults are 10 s and 8 s.
        "CONNECTORS_PROVIDER_TIMEOUT_SECONDS": "2",
        "CONNECTORS_REFRESH_RETRY_SECONDS": "1",
        "CONNECTORS_REFRESH_LEASE_SECONDS": "10",
        # A caller waits 3 s for a refresh; the request to the provider may take 10 s.
        "CONNECTORS_REFRESH_WAIT_SECONDS": "3",
        "CONNECTORS_REFRESH_REQUEST_SECONDS": "10",
        # Webhooks to the tests' loopback receiver, retried on a short schedule (4 attempts).
        "CONNECTORS_WEBHOOK_RETRY_SCHEDULE": "0.5,0.5,0.5",
        "CONNECTORS_WEBHOOK_POLL_SECONDS": "0.2",
        "CONNECTORS_WEBHOOK_TIMEOUT_SECONDS": "3",
        # A rotated issuer key is fetched at once (the 30 s bound is tests/oauth's).
        "CONNECTORS_JWKS_REFETCH_SECONDS": "0",
        # complete-oauth?wait=N: far slower than the tests' bounds, so that a call woken within
        # them on this process was woken by the callback itself (tests/flows/test_complete_wait.py
        # starts a second process that polls quickly).
        "CONNECTORS_COMPLETE_WAIT_POLL_SECONDS": "30",
    }

    async def configure_app(session, runtime):  # type: ignore[no-untyped-def]
        apps = OAuthAppService(session, runtime.sealer, runtime.catalog)
        fake_keys = fake_provider_entries(fake_provider)
        configured = (PROVIDER_KEY, FAULTY_KEY, STATELESS_KEY, *grant_providers.keys, *PROXY_KEYS)
        for key in (*configured, *fake_keys):
            await apps.configure(None, key, client_id=CLIENT_ID, client_secret=CLIENT_SECRET)

    with running_service(backend, port, env, workdir / "service.log") as proc:
        proc.run_db(configure_app)
        yield proc


@dataclass(frozen=True)
class Tenant:
    organization_id: str
    user_id: str
    api_key: str
    api_key_id: str

    @property
    def headers(self) -> dict[str, str]:
        return {"X-API-Key": self.api_key}

    @property
    def org(self) -> dict[str, str]:
        return {"organization_id": self.organization_id}

    @property
    def one_off_headers(self) -> dict[str, str]:
        """The key with its last character changed: always a different, wrong key."""
        last = "y" if self.api_key.endswith("x") else "x"
        return {"X-API-Key": self.api_key[:-1] + last}


def make_tenant(
    service: ServiceProcess, role: Role = Role.OWNER, email: str | None = None
) -> Tenant:
    async def work(session, runtime):  # type: ignore[no-untyped-def]
        identities = IdentityService(session)
        org = await identities.create_organization("Test Org")
        user = await identities.create_user(
            email or f"{os.urandom(6).hex()}@example.test", org.id, role=role
        )
        issued = await identities.create_api_key(user.id)
        outputs.RECORD.add_secret(issued.plaintext, "api_key")
        return Tenant(org.id, user.id, issued.plaintext, issued.key.id)

    return service.run_db(work)


@pytest.fixture
def service_under_test(service: ServiceProcess) -> ServiceProcess:
    """The service ``tenant``, ``other_tenant`` and ``api`` belong to: the session's, unless a
    folder whose tests run against a service of their own overrides this fixture."""
    return service


@pytest.fixture
def tenant(service_under_test: ServiceProcess) -> Tenant:
    return make_tenant(service_under_test)


@pytest.fixture
def other_tenant(service_under_test: ServiceProcess) -> Tenant:
    return make_tenant(service_under_test)


@pytest.fixture
def api(service_under_test: ServiceProcess) -> Iterator[httpx.Client]:
    with web.client(base_url=service_under_test.api, timeout=30) as client:
        yield client
