"""OpenTelemetry tracing (SPEC §12): with ``OTEL_EXPORTER_OTLP_ENDPOINT`` set, the observed
service exports to the test's OTLP/HTTP receiver a server span per request (named by its route
template), a span per SQL statement and per token lookup, and a client span per provider call;
no query string or secret reaches any span. Without the variables nothing of the SDK loads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from urllib.parse import parse_qs, urlsplit

import httpx

from personal_connectors.models import Connection
from personal_connectors.tokens.vault import TokenVault
from tests.conftest import CLIENT_SECRET, make_tenant
from tests.flows.conftest import authorize_and_consent, follow_callback
from tests.support.otlp_receiver import CLIENT, SERVER, ReceivedSpan
from tests.telemetry.conftest import Observed, hand_out

CALLBACK_ROUTE = "/v1/personal-connectors/callback"
TOKEN_ROUTE = "/v1/personal-connectors/{connection_id}/token"


def spans_of(observed: Observed) -> list[ReceivedSpan]:
    name = observed.service.env["OTEL_SERVICE_NAME"]
    return [span for span in observed.spans.snapshot() if span.resource["service.name"] == name]


def wait_for_spans(observed: Observed, condition, what: str) -> list[ReceivedSpan]:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + 30
    while not condition(spans := spans_of(observed)):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
    return spans


def test_requests_database_and_provider_calls_are_traced_without_secrets(
    observed: Observed, observed_api: httpx.Client
) -> None:
    tenant = make_tenant(observed.service)
    flow = authorize_and_consent(observed_api, tenant)
    code = parse_qs(urlsplit(flow.callback_url).query)["code"][0]
    callback = follow_callback(flow.callback_url)
    assert callback.status_code == 200, callback.text
    connection_id = callback.json()["data"]["connection_id"]
    handed = hand_out(observed_api, tenant, connection_id)
    assert handed.status_code == 200
    token_trace = handed.headers["x-request-id"]
    refreshed = hand_out(observed_api, tenant, connection_id, force_refresh="true")
    assert refreshed.status_code == 200

    awaited = {
        callback.headers["x-request-id"],
        token_trace,
        refreshed.headers["x-request-id"],
    }

    def complete(spans: list[ReceivedSpan]) -> bool:
        # Every request asserted on below: the exporter sends in batches, not in request order.
        return awaited <= {s.attributes.get("personal_connectors.trace_id") for s in spans}

    spans = wait_for_spans(observed, complete, "the requests' spans")
    by_trace = {s.attributes.get("personal_connectors.trace_id"): s for s in spans}

    # The callback's server span: named by route template, its query gone.
    callback_span = by_trace[callback.headers["x-request-id"]]
    assert callback_span.kind == SERVER
    assert callback_span.name == f"GET {CALLBACK_ROUTE}"
    assert callback_span.attributes["http.route"] == CALLBACK_ROUTE
    assert callback_span.attributes.get("url.query", "") == ""
    in_callback = [s for s in spans if s.trace_id == callback_span.trace_id]
    # The provider's token endpoint was called, as a client span of the same trace.
    calls = [s for s in in_callback if s.kind == CLIENT and "url.full" in s.attributes]
    calls += [s for s in in_callback if s.kind == CLIENT and "http.url" in s.attributes]
    assert any(
        "/token" in str(s.attributes.get("url.full", s.attributes.get("http.url"))) for s in calls
    )
    # SQL statements (SQLAlchemy) in the same trace.
    backend = "postgresql" if "CONNECTORS_DATABASE_URL" in observed.service.env else "sqlite"
    assert any(s.attributes.get("db.system") == backend for s in in_callback)

    # The token route: its server span, and the token path's own lookup inside it.
    token_span = by_trace[token_trace]
    assert token_span.name == f"POST {TOKEN_ROUTE}"
    lookups = [s for s in spans if s.trace_id == token_span.trace_id and s.name == "token lookup"]
    assert len(lookups) == 1 and lookups[0].attributes["db.system"] == backend

    # No secret of the flow, nor any query string, in any attribute of any span.
    async def tokens(session, runtime):  # type: ignore[no-untyped-def]
        connection = await session.get(Connection, connection_id)
        vault = TokenVault(runtime.sealer)
        return vault.access_token(connection), vault.refresh_token(connection)

    access_token, refresh_token = observed.service.run_db(tokens)
    exported = json.dumps([[s.name, s.attributes] for s in spans_of(observed)], default=str)
    for secret in (code, flow.state, access_token, refresh_token, CLIENT_SECRET, tenant.api_key):
        assert secret not in exported
    for span in spans_of(observed):
        for name in ("url.full", "http.url", "http.target"):
            assert "?" not in str(span.attributes.get(name, "")), (span.name, name)


def test_without_the_otel_variables_nothing_of_the_sdk_is_loaded(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The app is built as ``serve`` builds it in each worker; no OpenTelemetry SDK, exporter or
    instrumentation module may load (start-up time, and no overhead on any request)."""
    program = (
        "import sys\n"
        "from personal_connectors.cli.serving import create_served_app\n"
        "create_served_app()\n"
        "from personal_connectors.telemetry import tracing\n"
        "loaded = sorted(m for m in sys.modules if m.startswith(('opentelemetry.sdk', "
        "'opentelemetry.exporter', 'opentelemetry.instrumentation')))\n"
        "print(tracing.active(), loaded)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "CONNECTORS_"))}
    env["CONNECTORS_DATA_DIR"] = str(tmp_path)
    ran = subprocess.run(
        [sys.executable, "-c", program], env=env, capture_output=True, text=True, timeout=60
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == "False []"
    # The same program with an endpoint named turns tracing on.
    env["OTEL_EXPORTER_OTLP_ENDPOINT"] = "http://127.0.0.1:9"
    traced = subprocess.run(
        [sys.executable, "-c", program], env=env, capture_output=True, text=True, timeout=60
    )
    assert traced.returncode == 0, traced.stderr
    assert traced.stdout.startswith("True ['opentelemetry.")
