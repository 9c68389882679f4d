"""POST /complete-oauth?wait=N holds its answer until the flow is over or N seconds have passed:
the callback wakes a call waiting on the same process at once, and one waiting on another
process (same database) within that process's poll interval."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import Tenant
from tests.flows.conftest import StartedFlow, authorize_and_consent, follow_callback
from tests.support import web
from tests.support.envelope import is_envelope
from tests.support.oidc import free_port
from tests.support.service import ServiceProcess
from tests.tokens.conftest import wait_for

# The most a woken call may take to answer after the callback's answer reached the browser.
WAKE_BOUND_S = 0.2
# How often the second process reads the database for flows finished elsewhere.
SECOND_POLL_S = "0.1"
WAITING_LOG = "complete-oauth waits up to"


@pytest.fixture
def second_process(service: ServiceProcess, tmp_path: Path) -> Iterator[ServiceProcess]:
    """Another `connectors serve` on the same database (its flows' redirect URI is the first
    process's, so the provider's callback always reaches the first)."""
    env = {**service.env, "CONNECTORS_COMPLETE_WAIT_POLL_SECONDS": SECOND_POLL_S}
    other = ServiceProcess(free_port(), env, tmp_path / "second.log").start()
    yield other
    other.stop()


@dataclass
class Answer:
    response: httpx.Response
    at: float  # time.monotonic() when it arrived


def complete(base: str, tenant: Tenant, state: str, wait: object | None = None) -> httpx.Response:
    params: dict[str, object] = {**tenant.org}
    if wait is not None:
        params["wait"] = wait
    with web.client(timeout=90) as client:
        return client.post(
            f"{base}/complete-oauth",
            params=params,
            headers=tenant.headers,
            json={"state_token": state},
        )


def waiting_calls(process: ServiceProcess) -> int:
    return process.logs().count(WAITING_LOG)


def callback_while_waiting(
    waiter: ServiceProcess, tenant: Tenant, flow: StartedFlow
) -> tuple[httpx.Response, float, Answer]:
    """complete-oauth?wait=30 on ``waiter``; once it waits, the browser's return to the
    callback. Returns the callback's answer, when it arrived, and the waiting call's answer."""
    before = waiting_calls(waiter)

    def wait_call() -> Answer:
        response = complete(waiter.api, tenant, flow.state, wait=30)
        return Answer(response, time.monotonic())

    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(wait_call)
        wait_for(lambda: waiting_calls(waiter) > before, 10, "the call to wait")
        assert not pending.done()
        callback = follow_callback(flow.callback_url)
        callback_at = time.monotonic()
        answer = pending.result(timeout=60)
    return callback, callback_at, answer


@pytest.mark.parametrize("where", ["same process", "other process"])
def test_the_waiting_call_answers_as_soon_as_the_callback_completes(
    api: httpx.Client,
    tenant: Tenant,
    service: ServiceProcess,
    second_process: ServiceProcess,
    where: str,
) -> None:
    waiter = service if where == "same process" else second_process
    flow = authorize_and_consent(api, tenant)
    callback, callback_at, answer = callback_while_waiting(waiter, tenant, flow)

    assert callback.status_code == 200, callback.text
    assert answer.response.status_code == 200, answer.response.text
    body = answer.response.json()
    assert body["connected"] is True
    assert body["connection"]["id"] == callback.json()["data"]["connection_id"]
    assert body["connection"]["status"] == "active"
    assert answer.at - callback_at < WAKE_BOUND_S, answer.at - callback_at
    # The same answer as without waiting, now that the flow is over.
    assert complete(service.api, tenant, flow.state).json() == body


def test_a_refused_consent_also_ends_the_wait(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess, second_process: ServiceProcess
) -> None:
    flow = authorize_and_consent(api, tenant, deny=True)
    callback, callback_at, answer = callback_while_waiting(second_process, tenant, flow)
    assert callback.status_code == 400
    body = answer.response.json()
    assert body["connected"] is False and body["error"]["code"] == "access_denied"
    assert answer.at - callback_at < WAKE_BOUND_S, answer.at - callback_at


def test_without_a_callback_it_answers_not_yet_after_the_wait(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess
) -> None:
    flow = authorize_and_consent(api, tenant)
    started = time.monotonic()
    response = complete(service.api, tenant, flow.state, wait=1)
    elapsed = time.monotonic() - started
    assert 1.0 <= elapsed < 1.5, elapsed
    assert response.status_code == 200, response.text
    assert response.json() == complete(service.api, tenant, flow.state).json()
    assert response.json()["connected"] is False and "error" not in response.json()


def test_a_finished_flow_answers_at_once(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess
) -> None:
    flow = authorize_and_consent(api, tenant)
    assert follow_callback(flow.callback_url).status_code == 200
    started = time.monotonic()
    response = complete(service.api, tenant, flow.state, wait=60)
    assert time.monotonic() - started < 1.0
    assert response.json()["connected"] is True


@pytest.mark.parametrize("wait", ["61", "-1", "abc", "1.5", ""])
def test_a_wait_outside_0_to_60_seconds_is_a_validation_error(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess, wait: str
) -> None:
    flow = authorize_and_consent(api, tenant)
    response = complete(service.api, tenant, flow.state, wait=wait)
    assert response.status_code == 400, response.text
    assert is_envelope(response.json(), 400)
    assert response.json()["error"]["code"] == "VALIDATION_ERROR"
    assert response.json()["error"]["details"]["fields"] == ["wait"]
    # Nothing changed: the flow still completes.
    assert follow_callback(flow.callback_url).status_code == 200
