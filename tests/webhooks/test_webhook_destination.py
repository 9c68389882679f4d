"""Webhook destinations: internal address literals are refused when an endpoint is registered,
and every delivery connects only to an address the outbound guard judged at that moment, through
the worker's real resolution path (the operating system's resolver)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from personal_connectors.exceptions import ValidationFailed
from personal_connectors.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint, new_id
from personal_connectors.outbound.urls import check_url
from personal_connectors.webhooks.service import secret_aad
from tests.conftest import BACKENDS, make_tenant
from tests.support import web
from tests.support.oidc import free_port
from tests.support.service import ServiceProcess, running_service, service_env
from tests.support.webhook_receiver import WebhookReceiver
from tests.webhooks.conftest import add_webhook, deliveries


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/in",
        "https://localhost/in",
        "https://hooks.localhost/in",
        "https://10.0.0.7/in",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/in",
        "https://[::127.0.0.1]/in",
        "https://[64:ff9b::a9fe:a9fe]/in",
        "https://[2002:7f00:1::]/in",
        "https://224.0.0.1/in",
        "https://2130706433/in",  # 127.0.0.1 in shorthand
        "https://0x7f.1/in",
    ],
)
def test_internal_literals_are_refused_at_registration(url: str) -> None:
    with pytest.raises(ValidationFailed, match="internal address"):
        check_url(url, allow_internal=False)


def test_only_https_unless_the_operator_allows_internal_destinations() -> None:
    with pytest.raises(ValidationFailed, match="must be https"):
        check_url("http://hooks.example.com/in", allow_internal=False)
    assert (
        check_url("https://hooks.example.com/in", allow_internal=False)
        == "https://hooks.example.com/in"
    )
    assert check_url("http://127.0.0.1:8080/in", allow_internal=True) == "http://127.0.0.1:8080/in"
    with pytest.raises(ValidationFailed, match="internal address"):
        check_url("http://10.0.0.7/in", allow_internal=True)  # development means this machine only


def strict(backend: str, tmp_path: Path, **settings: str) -> Iterator[ServiceProcess]:
    """A real ``connectors serve`` with its webhook worker and the operator setting off."""
    port = free_port()
    env = service_env(
        tmp_path,
        port,
        CONNECTORS_OUTBOUND_ALLOW_INTERNAL="false",
        CONNECTORS_WEBHOOK_RETRY_SCHEDULE="30",
        CONNECTORS_WEBHOOK_POLL_SECONDS="0.2",
        **settings,
    )
    with running_service(backend, port, env, tmp_path / "service.log") as service:
        yield service


@pytest.fixture(params=BACKENDS)
def strict_service(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServiceProcess]:
    yield from strict(request.param, tmp_path)


@pytest.fixture(params=BACKENDS)
def webhook_loopback_service(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[ServiceProcess]:
    """The same, with CONNECTORS_WEBHOOK_ALLOW_HTTP_LOOPBACK on."""
    yield from strict(request.param, tmp_path, CONNECTORS_WEBHOOK_ALLOW_HTTP_LOOPBACK="true")


def owed_delivery(endpoint_id: str, organization_id: str, event_type: str) -> WebhookDelivery:
    """A delivery written directly, as an event's transaction writes it, for the worker."""
    return WebhookDelivery(
        id=new_id("msg"),
        endpoint_id=endpoint_id,
        organization_id=organization_id,
        event_id=new_id("evt"),
        event_type=event_type,
        payload={"type": event_type},
    )


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A TCP port on 127.0.0.1 that counts nothing but connection attempts (its backlog)."""
    server = socket.create_server(("127.0.0.1", 0))
    server.setblocking(False)
    yield server
    server.close()


def test_a_name_that_resolves_inward_is_never_connected_to(
    strict_service: ServiceProcess, listener: socket.socket
) -> None:
    """``localhost`` is a name, judged by what the system resolver answers at delivery time (as
    for a public name repointed inward after registration): the delivery fails with the reason,
    and nothing ever connects to the port it names."""
    tenant = make_tenant(strict_service)
    port = listener.getsockname()[1]

    async def plant(session, runtime):  # type: ignore[no-untyped-def]
        # Written directly: registration refuses this name, which is what a rename would dodge.
        endpoint = WebhookEndpoint(
            id=new_id("whe"),
            organization_id=tenant.organization_id,
            url=f"https://localhost:{port}/hook",
            is_active=True,
            key_id=runtime.sealer.key_id,
        )
        endpoint.secret_ct = runtime.sealer.seal("whsec_test", secret_aad(endpoint.id))
        session.add(endpoint)
        await session.flush()
        session.add(owed_delivery(endpoint.id, tenant.organization_id, "connection.created"))
        await session.commit()

    strict_service.run_db(plant)
    deadline = time.monotonic() + 30
    # The attempt is counted when the delivery is claimed, its outcome written after it.
    while (row := deliveries(strict_service, tenant.organization_id)[0]).last_error is None:
        assert time.monotonic() < deadline, "the worker never finished an attempt"
        time.sleep(0.1)
    assert row.status == DeliveryStatus.PENDING  # kept for a retry: the name may be repointed
    assert row.last_error == "destination refused: it resolves to a loopback address"
    assert row.last_status_code is None
    with pytest.raises(BlockingIOError):
        listener.accept()  # no connection was ever made to the port
    assert web.get(f"{strict_service.base_url}/readyz").status_code == 200


def test_the_webhook_loopback_setting_lets_webhooks_alone_reach_this_machine(
    webhook_loopback_service: ServiceProcess, receiver: WebhookReceiver
) -> None:
    """CONNECTORS_WEBHOOK_ALLOW_HTTP_LOOPBACK (SPEC §9): an http://127.0.0.1 receiver is
    registered and delivered to; every other URL someone gives keeps the outbound rule."""
    service = webhook_loopback_service
    tenant = make_tenant(service)
    with web.client(base_url=service.api, timeout=30) as api:
        endpoint = add_webhook(api, tenant, receiver.url(), event_types=["connection.disabled"])
        assert endpoint["url"] == receiver.url()
        private = api.post(
            "/webhooks",
            params=tenant.org,
            headers=tenant.headers,
            json={"url": "http://10.0.0.7/hook"},
        )
        assert private.status_code == 400, private.text  # loopback only
        issuer = api.post(
            "/trusted-issuers",
            params=tenant.org,
            headers=tenant.headers,
            json={
                "issuer": "https://idp.example.test",
                "audience": "platform",
                "jwks_uri": f"{receiver.url('/jwks')}",
            },
        )
        assert issuer.status_code == 400, issuer.text  # not a webhook: the rule holds

    async def plant(session, runtime):  # type: ignore[no-untyped-def]
        session.add(owed_delivery(endpoint["id"], tenant.organization_id, "connection.disabled"))
        await session.commit()

    service.run_db(plant)
    [received] = receiver.wait_for(lambda seen: len(seen) == 1)
    assert received.json["type"] == "connection.disabled" and received.answered == 204
    deadline = time.monotonic() + 30
    while (
        row := deliveries(service, tenant.organization_id)[0]
    ).status != DeliveryStatus.SUCCEEDED:
        assert time.monotonic() < deadline, f"the delivery stayed {row.status}: {row.last_error}"
        time.sleep(0.1)
