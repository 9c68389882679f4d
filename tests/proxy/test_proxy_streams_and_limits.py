"""Bodies stream both ways without being held whole; 429 and 503 come back or, asked for,
are retried; bodies and time are bounded (SPEC §9). No credential reaches a log line."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import Tenant
from tests.proxy.conftest import connect_to, is_envelope, proxied
from tests.support import web
from tests.support.db import stored_tokens
from tests.support.oidc import free_port
from tests.support.service import ServiceProcess
from tests.support.upstream_api import (
    HOLD_SECONDS,
    PROXY_HEADER_KEY,
    UpstreamApi,
    pattern_bytes,
)

MiB = 1024 * 1024


def test_a_download_streams_before_the_provider_has_sent_it_all(
    api: httpx.Client, tenant: Tenant, upstream: UpstreamApi
) -> None:
    """The upstream sends half of 4 MiB, then waits for the test: only a service that passes
    bytes on as they come lets the test read them before releasing the rest."""
    connection_id = connect_to(api, tenant)
    size = 4 * MiB
    digest, received = hashlib.sha256(), 0
    url = f"{str(api.base_url).rstrip('/')}/{connection_id}/proxy/download/{size}"

    with web.stream("GET", url, params=tenant.org, headers=tenant.headers, timeout=60) as r:
        assert r.status_code == 200 and r.headers["x-connectors-proxy"] == "upstream"
        for chunk in r.iter_raw():
            digest.update(chunk)
            received += len(chunk)
            if received >= MiB and not upstream.released.is_set():
                assert not upstream.waited_out
                upstream.release()

    assert not upstream.waited_out
    assert received == size
    assert digest.hexdigest() == hashlib.sha256(pattern_bytes(size)).hexdigest()


def test_an_upload_streams_before_the_caller_has_sent_it_all(
    api: httpx.Client, tenant: Tenant, upstream: UpstreamApi
) -> None:
    """The caller sends 2 MiB of 4, then waits until the provider has received 1.5 MiB."""
    connection_id = connect_to(api, tenant)
    data = pattern_bytes(4 * MiB)
    waited_out = threading.Event()

    def body() -> Iterator[bytes]:
        for start in range(0, len(data), 256 * 1024):
            if start == 2 * MiB:
                deadline = time.monotonic() + HOLD_SECONDS
                while upstream.received < 1.5 * MiB:
                    if time.monotonic() > deadline:
                        waited_out.set()
                        break
                    time.sleep(0.01)
            yield data[start : start + 256 * 1024]

    response = proxied(api, tenant, connection_id, "upload", "POST", content=body())

    assert response.status_code == 200, response.text
    assert not waited_out.is_set()
    assert response.json() == {"length": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def test_rate_limits_come_back_with_retry_after_unless_retries_are_asked(
    api: httpx.Client, tenant: Tenant, upstream: UpstreamApi
) -> None:
    connection_id = connect_to(api, tenant)

    def flaky(key: str, method: str = "GET", retries: str | None = None, **query: str):  # type: ignore[no-untyped-def]
        headers = {} if retries is None else {"X-Connectors-Retries": retries}
        return proxied(
            api, tenant, connection_id, f"flaky/{key}", method, params=query, headers=headers
        )

    plain = flaky("a", fail="1", status="429", retry_after="7")
    assert plain.status_code == 429 and plain.headers["retry-after"] == "7"
    assert plain.headers["x-connectors-proxy"] == "upstream"

    retried = flaky("b", retries="2", fail="2", status="429", retry_after="1")
    assert retried.status_code == 200 and retried.json() == {"attempt": 3}

    unavailable = flaky("c", "PUT", retries="1", fail="1", status="503")  # no Retry-After
    assert unavailable.status_code == 200 and unavailable.json() == {"attempt": 2}

    exhausted = flaky("d", retries="1", fail="5", status="503", retry_after="0")
    assert exhausted.status_code == 503 and exhausted.json() == {"attempt": 2}

    too_long = flaky("e", retries="3", fail="1", status="429", retry_after="120")
    assert too_long.status_code == 429 and too_long.headers["retry-after"] == "120"

    not_idempotent = flaky("f", "POST", retries="3", fail="1", status="503", retry_after="0")
    assert not_idempotent.status_code == 503
    assert upstream.attempts == {"a": 1, "b": 3, "c": 2, "d": 2, "e": 1, "f": 1}


@pytest.fixture
def bounded_process(service: ServiceProcess, tmp_path: Path) -> Iterator[ServiceProcess]:
    """Another server on the same database with small proxy limits."""
    env = {
        **service.env,
        "CONNECTORS_PROXY_MAX_BODY_BYTES": str(2 * MiB),
        "CONNECTORS_PROXY_TIMEOUT_SECONDS": "1",
    }
    process = ServiceProcess(free_port(), env, tmp_path / "bounded.log").start()
    yield process
    process.stop()


def test_bodies_over_the_limit_and_slow_providers_are_refused(
    api: httpx.Client,
    tenant: Tenant,
    service: ServiceProcess,
    bounded_process: ServiceProcess,
    upstream: UpstreamApi,
) -> None:
    connection_id = connect_to(api, tenant)
    with web.client(base_url=bounded_process.api, timeout=30) as bounded:
        declared = proxied(
            bounded, tenant, connection_id, "upload", "POST", content=b"x" * (2 * MiB + 1)
        )
        assert is_envelope(declared, 413, "PAYLOAD_TOO_LARGE")

        def chunked() -> Iterator[bytes]:
            for _ in range(10):
                yield b"y" * (256 * 1024)

        streamed = proxied(bounded, tenant, connection_id, "upload", "POST", content=chunked())
        assert is_envelope(streamed, 413, "PAYLOAD_TOO_LARGE")

        fits = proxied(bounded, tenant, connection_id, "upload", "POST", content=b"z" * (2 * MiB))
        assert fits.status_code == 200 and fits.json()["length"] == 2 * MiB

        slow = proxied(bounded, tenant, connection_id, "slow", params={"seconds": "3"})
        assert is_envelope(slow, 504, "PROVIDER_TIMEOUT")
    # The same calls within the default limits (10 MiB, 30 s).
    big = proxied(api, tenant, connection_id, "upload", "POST", content=b"x" * (2 * MiB + 1))
    assert big.status_code == 200


def test_no_credential_reaches_a_log_line(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess, upstream: UpstreamApi
) -> None:
    """The token goes in a header and the query (api_auth); the calls succeed, fail at the
    provider and are refused; neither the token nor the key is in the service's log."""
    connection_id = connect_to(api, tenant, PROXY_HEADER_KEY)
    access_token, refresh_token = stored_tokens(service, connection_id)
    assert access_token and refresh_token
    upstream.stale.add(access_token)  # a 401, a refresh, a retry

    assert proxied(api, tenant, connection_id, "echo", params={"q": "x"}).status_code == 200
    assert proxied(api, tenant, connection_id, "status/500").status_code == 500
    assert proxied(api, tenant, connection_id, "..%2Fx").status_code == 400

    new_token, _ = stored_tokens(service, connection_id)
    logs = service.logs()
    assert f"/v1/personal-connectors/{connection_id}/proxy/echo" in logs  # the log is this one
    for secret in (access_token, refresh_token, new_token, tenant.api_key):
        assert secret and secret not in logs
