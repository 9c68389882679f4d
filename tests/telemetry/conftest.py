"""The observed service: ``connectors serve --workers 2 --refresher`` with everything of SPEC §12
switched on — JSON logs, a metrics token, tracing to a loopback OTLP receiver — on a database
of its own, once per backend. Helpers read its ``/metrics``."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from personal_connectors.apps.service import OAuthAppService
from tests.conftest import (
    BACKENDS,
    CLIENT_ID,
    CLIENT_SECRET,
    PROVIDER_KEY,
    RETURN_ORIGIN,
    Tenant,
    local_provider_entry,
    write_providers_file,
)
from tests.flows.conftest import authorize_and_consent, follow_callback
from tests.support import outputs, web
from tests.support.fault_proxy import FaultProxy
from tests.support.oidc import OidcProvider
from tests.support.otlp_receiver import OtlpReceiver
from tests.support.service import ServiceProcess, running_service, service_env
from tests.support.upstream_api import PROXY_KEY, UpstreamApi, proxy_entries

WORKERS = 2


@dataclass
class Observed:
    service: ServiceProcess
    metrics_token: str
    spans: OtlpReceiver

    @property
    def metrics_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.metrics_token}"}

    def scrape(self) -> Samples:
        response = web.get(
            f"{self.service.base_url}/metrics", headers=self.metrics_headers, timeout=10
        )
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/plain")
        return Samples.parse(response.text)

    def wait_for_metric(
        self, condition: Callable[[Samples], bool], what: str, timeout: float = 30.0
    ) -> Samples:
        """Scrape until ``condition`` holds: a request's metric is recorded once its answer has
        gone out, so a scrape right after it may come a moment early."""
        deadline = time.monotonic() + timeout
        while True:
            samples = self.scrape()
            if condition(samples):
                return samples
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.1)


@dataclass(frozen=True)
class Samples:
    """Every sample of a scrape: (sample name, labels) -> value."""

    values: dict[tuple[str, frozenset[tuple[str, str]]], float]

    @classmethod
    def parse(cls, text: str) -> Samples:
        values = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                values[(sample.name, frozenset(sample.labels.items()))] = sample.value
        return cls(values)

    def get(self, name: str, **labels: str) -> float:
        """The sum of the samples called ``name`` whose labels include ``labels`` (0 if none)."""
        wanted = set(labels.items())
        return sum(
            value
            for (sample, have), value in self.values.items()
            if sample == name and wanted <= have
        )

    def has(self, name: str, **labels: str) -> bool:
        wanted = set(labels.items())
        return any(sample == name and wanted <= have for sample, have in self.values)

    def labels_of(self, name: str) -> set[str]:
        return {label for sample, have in self.values if sample == name for label, _ in have}

    @property
    def names(self) -> set[str]:
        return {sample for sample, _ in self.values}


@pytest.fixture(scope="session")
def otlp() -> Iterator[OtlpReceiver]:
    receiver = OtlpReceiver()
    yield receiver
    receiver.close()


# Session-wide, as the service fixture: one start per backend (and xdist worker), not per module.
@pytest.fixture(scope="session", params=BACKENDS)
def observed(
    request: pytest.FixtureRequest,
    oidc: OidcProvider,
    fault_proxy: FaultProxy,
    service_ports: dict[str, int],
    tmp_path_factory: pytest.TempPathFactory,
    otlp: OtlpReceiver,
    upstream_api: UpstreamApi,
) -> Iterator[Observed]:
    backend: str = request.param
    workdir = tmp_path_factory.mktemp(f"observed-{backend}")
    port = service_ports[f"{backend}-observed"]
    token = f"metrics-{os.urandom(16).hex()}"
    outputs.RECORD.add_secret(token, "metrics_token")
    env = service_env(workdir, port) | {
        "CONNECTORS_PROVIDERS_FILE": str(
            write_providers_file(
                workdir / "providers.yaml",
                oidc,
                fault_proxy,
                proxy_entries(upstream_api, local_provider_entry(oidc)),  # (an API to proxy to)
            )
        ),
        "CONNECTORS_ALLOWED_RETURN_ORIGINS": f"{RETURN_ORIGIN},http://127.0.0.1:{port}",
        "CONNECTORS_LOG_LEVEL": "DEBUG",
        "CONNECTORS_LOG_FORMAT": "json",
        "CONNECTORS_METRICS_TOKEN": token,
        "CONNECTORS_METRICS_SAMPLE_SECONDS": "0.2",
        "CONNECTORS_REFRESHER_INTERVAL_SECONDS": "0.5",
        "CONNECTORS_PROVIDER_TIMEOUT_SECONDS": "5",
        "CONNECTORS_WEBHOOK_RETRY_SCHEDULE": "0.5,0.5,0.5",
        "CONNECTORS_WEBHOOK_POLL_SECONDS": "0.2",
        "CONNECTORS_WEBHOOK_TIMEOUT_SECONDS": "3",
        "OTEL_EXPORTER_OTLP_ENDPOINT": otlp.endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "200",
        "OTEL_SERVICE_NAME": f"pc-observed-{backend}",
    }

    async def configure_app(session, runtime):  # type: ignore[no-untyped-def]
        apps = OAuthAppService(session, runtime.sealer, runtime.catalog)
        for key in (PROVIDER_KEY, PROXY_KEY):
            await apps.configure(None, key, client_id=CLIENT_ID, client_secret=CLIENT_SECRET)

    serve = ["--workers", str(WORKERS), "--refresher"]
    with running_service(backend, port, env, workdir / "service.log", serve) as process:
        process.run_db(configure_app)
        yield Observed(process, token, otlp)


@pytest.fixture
def observed_api(observed: Observed) -> Iterator[httpx.Client]:
    with web.client(base_url=observed.service.api, timeout=30) as client:
        yield client


def connect_account(api: httpx.Client, tenant: Tenant, connector_type: str = PROVIDER_KEY) -> str:
    """A connection through the whole flow at the real OpenID provider."""
    flow = authorize_and_consent(
        api, tenant, login=f"user-{os.urandom(4).hex()}", connector_type=connector_type
    )
    response = follow_callback(flow.callback_url)
    assert response.status_code == 200, response.text
    return str(response.json()["data"]["connection_id"])


def hand_out(
    api: httpx.Client, tenant: Tenant, connection_id: str, **params: str
) -> httpx.Response:
    return api.post(
        f"/{connection_id}/token", params={**tenant.org, **params}, headers=tenant.headers
    )
