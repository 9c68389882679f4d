"""The device authorization grant (RFC 8628) against a real provider: the user approves on a
second device, complete-oauth polls — never faster than the interval — and connects."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from personal_connectors.crypto.aead import associated_data
from personal_connectors.flows.state import state_hash
from personal_connectors.models import Flow, utcnow
from tests.conftest import PROVIDER_KEY, Tenant
from tests.flows.conftest import start_flow
from tests.support import web
from tests.support.envelope import is_envelope
from tests.support.grants import DEVICE_KEY, CannedProxy, GrantProviders
from tests.support.oidc import approve_device
from tests.support.service import ServiceProcess
from tests.tokens.conftest import wait_for

TOKEN_PATH = "/token"


def assert_envelope(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert is_envelope(response.json(), status)
    assert response.json()["error"]["code"] == code


@pytest.fixture
def proxy(grant_providers: GrantProviders) -> Iterator[CannedProxy]:
    grant_providers.device_proxy.oauth_error = None
    yield grant_providers.device_proxy
    grant_providers.device_proxy.oauth_error = None


def start_device_flow(api: httpx.Client, tenant: Tenant) -> dict[str, Any]:
    return start_flow(api, tenant, connector_type=DEVICE_KEY, grant="device_code")


def complete(api: httpx.Client, tenant: Tenant, state: str) -> httpx.Response:
    return api.post(
        "/complete-oauth", params=tenant.org, headers=tenant.headers, json={"state_token": state}
    )


def flow_row(service: ServiceProcess, state: str) -> Flow:
    async def work(session, runtime):  # type: ignore[no-untyped-def]
        statement = select(Flow).where(Flow.state_hash == state_hash(state))
        return (await session.execute(statement)).scalar_one()

    return service.run_db(work)


def update_flow(service: ServiceProcess, state: str, **values: object) -> None:
    async def work(session, runtime):  # type: ignore[no-untyped-def]
        statement = select(Flow).where(Flow.state_hash == state_hash(state))
        flow = (await session.execute(statement)).scalar_one()
        for name, value in values.items():
            setattr(flow, name, value)
        await session.commit()

    service.run_db(work)


def make_due(service: ServiceProcess, state: str) -> None:
    """Skip the wait: the interval is the provider's 5 s (and more after slow_down)."""
    update_flow(service, state, next_poll_at=utcnow() - timedelta(seconds=1))


def sealed_device_code(service: ServiceProcess, state: str) -> str:
    async def work(session, runtime):  # type: ignore[no-untyped-def]
        statement = select(Flow).where(Flow.state_hash == state_hash(state))
        flow = (await session.execute(statement)).scalar_one()
        aad = associated_data("flows", flow.id, "device_code")
        return runtime.sealer.open(flow.key_id, flow.device_code_ct, aad)

    return service.run_db(work)


def test_device_flow_connects_after_approval_on_another_device(
    api: httpx.Client,
    tenant: Tenant,
    service: ServiceProcess,
    grant_providers: GrantProviders,
    proxy: CannedProxy,
) -> None:
    started = start_device_flow(api, tenant)
    issuer = grant_providers.device.issuer
    assert started["verification_uri"] == f"{issuer}/device"
    assert started["verification_uri_complete"].startswith(f"{issuer}/device?user_code=")
    assert started["authorization_url"] == started["verification_uri_complete"]
    assert started["interval"] == 5  # the RFC's default: oidc-provider sends none
    assert len(started["user_code"]) >= 8
    assert started["state"] == started["state_token"]
    device_code = sealed_device_code(service, started["state"])
    assert device_code not in str(started)

    # Called before the interval passed: "not yet", and the provider is not asked.
    hits = proxy.count(TOKEN_PATH)
    early = complete(api, tenant, started["state"])
    assert early.status_code == 200, early.text
    assert early.json()["connected"] is False and early.json()["connection"] is None
    assert 0 < early.json()["retry_after"] <= 5
    assert proxy.count(TOKEN_PATH) == hits

    # Due, but the user has not approved yet: authorization_pending from the provider.
    make_due(service, started["state"])
    pending = complete(api, tenant, started["state"])
    assert pending.json()["connected"] is False and "error" not in pending.json()
    assert pending.json()["retry_after"] == 5
    assert proxy.count(TOKEN_PATH) == hits + 1

    title = approve_device(
        started["verification_uri"], user_code=started["user_code"], login="carol"
    )
    assert title.startswith("Sign-in Success")
    make_due(service, started["state"])
    done = complete(api, tenant, started["state"])
    assert done.status_code == 200, done.text
    answer = done.json()
    assert answer["connected"] is True and "retry_after" not in answer
    connection_id = answer["connection"]["id"]
    assert answer["connection"] == {"id": connection_id, "app_key": DEVICE_KEY, "status": "active"}
    assert proxy.count(TOKEN_PATH) == hits + 2

    # Idempotent, and the redeemed device code is never sent again.
    again = complete(api, tenant, started["state"])
    assert again.json() == answer
    assert proxy.count(TOKEN_PATH) == hits + 2
    assert flow_row(service, started["state"]).device_code_ct is None

    [listed] = api.get("", params=tenant.org, headers=tenant.headers).json()
    assert listed["id"] == connection_id and listed["account_id"] == "carol"
    assert listed["account_email"] == "carol@example.test"
    assert {"openid", "email"} <= set(listed["scopes"])
    assert device_code not in service.logs()


def test_slow_down_adds_five_seconds_for_good_and_denial_fails_the_flow(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess, proxy: CannedProxy
) -> None:
    started = start_device_flow(api, tenant)
    state = started["state"]
    hits = proxy.count(TOKEN_PATH)

    make_due(service, state)
    proxy.oauth_error = "slow_down"
    slowed = complete(api, tenant, state)
    assert slowed.json()["connected"] is False and slowed.json()["retry_after"] == 10
    assert flow_row(service, state).poll_interval == 10
    assert proxy.count(TOKEN_PATH) == hits + 1
    # The provider is not asked again before the new interval.
    assert 5 < complete(api, tenant, state).json()["retry_after"] <= 10
    assert proxy.count(TOKEN_PATH) == hits + 1

    # The raised interval stays for all later polls (RFC 8628 §3.5).
    proxy.oauth_error = None
    make_due(service, state)
    assert complete(api, tenant, state).json()["retry_after"] == 10
    assert proxy.count(TOKEN_PATH) == hits + 2

    title = approve_device(started["verification_uri_complete"], deny=True)
    assert title.startswith("Sign-in")  # the code form again, with "interrupted"
    make_due(service, state)
    denied = complete(api, tenant, state)
    assert denied.status_code == 200
    body = denied.json()
    assert body["connected"] is False and body["connection"] is None
    assert body["error"]["code"] == "access_denied"
    assert "retry_after" not in body
    assert flow_row(service, state).status == "failed"
    assert flow_row(service, state).device_code_ct is None
    assert complete(api, tenant, state).json() == body  # idempotent, provider not asked
    assert proxy.count(TOKEN_PATH) == hits + 3
    assert api.get("", params=tenant.org, headers=tenant.headers).json() == []


def test_expired_device_code_fails_without_asking_the_provider(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess, proxy: CannedProxy
) -> None:
    started = start_device_flow(api, tenant)
    # The flow lives as long as the provider's code (oidc-provider: 600 s), not the flow TTL.
    lifetime = flow_row(service, started["state"]).expires_at - utcnow()
    assert timedelta(seconds=590) < lifetime <= timedelta(seconds=600)
    hits = proxy.count(TOKEN_PATH)
    update_flow(service, started["state"], expires_at=utcnow() - timedelta(seconds=1))
    answer = complete(api, tenant, started["state"]).json()
    assert answer["connected"] is False
    assert answer["error"]["code"] == "expired_token"
    assert proxy.count(TOKEN_PATH) == hits


def test_provider_error_while_polling_ends_the_flow_with_that_error(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess, proxy: CannedProxy
) -> None:
    started = start_device_flow(api, tenant)
    make_due(service, started["state"])
    proxy.oauth_error = "expired_token"
    answer = complete(api, tenant, started["state"]).json()
    assert answer["connected"] is False and answer["error"]["code"] == "expired_token"
    assert flow_row(service, started["state"]).status == "failed"


def test_only_the_user_who_started_may_poll_and_the_callback_ignores_device_flows(
    api: httpx.Client,
    tenant: Tenant,
    other_tenant: Tenant,
    service: ServiceProcess,
    proxy: CannedProxy,
) -> None:
    started = start_device_flow(api, tenant)
    make_due(service, started["state"])
    hits = proxy.count(TOKEN_PATH)
    foreign = api.post(
        "/complete-oauth",
        params=other_tenant.org,
        headers=other_tenant.headers,
        json={"state_token": started["state"]},
    )
    assert_envelope(foreign, 400, "VALIDATION_ERROR")
    assert foreign.json()["error"]["system_message"] == "Invalid or expired state token."
    callback = web.get(
        f"{service.api}/callback",
        params={"state": started["state"], "code": "forged"},
        headers={"Accept": "application/json"},
    )
    assert_envelope(callback, 400, "VALIDATION_ERROR")
    assert proxy.count(TOKEN_PATH) == hits
    assert flow_row(service, started["state"]).status == "pending"


def test_connector_without_a_device_endpoint_refuses_the_device_grant(
    api: httpx.Client, tenant: Tenant
) -> None:
    response = api.post(
        "/authorize",
        params=tenant.org,
        headers=tenant.headers,
        json={"connector_type": PROVIDER_KEY, "grant": "device_code"},
    )
    assert_envelope(response, 400, "VALIDATION_ERROR")
    assert response.json()["error"]["details"]["fields"] == ["grant"]
    assert "device flow" in response.json()["error"]["system_message"]


def test_redirect_flows_answer_without_device_fields(api: httpx.Client, tenant: Tenant) -> None:
    started = start_flow(api, tenant)
    assert set(started) == {
        "authorization_url",
        "launch_url",
        "state",
        "state_token",
        "expires_at",
    }


def test_a_waiting_complete_oauth_polls_at_the_interval_until_approved(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess, proxy: CannedProxy
) -> None:
    """complete-oauth?wait=N replaces the polling loop: it asks the provider when the interval
    allows (never sooner), and answers once the user approved."""
    started = start_device_flow(api, tenant)
    hits = proxy.count(TOKEN_PATH)
    waiting = service.logs().count("complete-oauth waits up to")

    def wait_call() -> httpx.Response:
        with web.client(base_url=service.api, timeout=60) as client:
            return client.post(
                "/complete-oauth",
                params={**tenant.org, "wait": 20},
                headers=tenant.headers,
                json={"state_token": started["state"]},
            )

    with ThreadPoolExecutor(1) as pool:
        call = pool.submit(wait_call)
        wait_for(
            lambda: service.logs().count("complete-oauth waits up to") > waiting, 10, "the wait"
        )
        assert proxy.count(TOKEN_PATH) == hits  # not before the interval (5 s from the start)
        title = approve_device(
            started["verification_uri"], user_code=started["user_code"], login="dave"
        )
        assert title.startswith("Sign-in Success")
        done = call.result(timeout=60)
    assert done.status_code == 200, done.text
    assert done.json()["connected"] is True
    assert proxy.count(TOKEN_PATH) == hits + 1  # one poll, when the interval allowed
