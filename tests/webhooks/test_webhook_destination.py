"""Host names of webhook URLs are resolved before every attempt: one that has a private,
loopback or link-local address is not sent to (SSRF), and the attempt is kept for a retry."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Sequence
from typing import Any

import httpx

from personal_connectors.config import Settings
from personal_connectors.models import WebhookDelivery, WebhookEndpoint
from personal_connectors.runtime import Runtime
from personal_connectors.webhooks.service import refused_destination, secret_aad
from personal_connectors.webhooks.worker import DeliveryWorker
from tests.support.service import ServiceProcess


def resolving_to(*addresses: str) -> Any:
    """A resolver with ``loop.getaddrinfo``'s answer shape, and the names it was asked for."""
    asked: list[tuple[str, int]] = []

    async def resolve(host: str, port: int) -> Sequence[tuple[Any, ...]]:
        asked.append((host, port))
        family = socket.AF_INET6 if ":" in addresses[0] else socket.AF_INET
        return [(family, socket.SOCK_STREAM, 6, "", (address, port)) for address in addresses]

    resolve.asked = asked  # type: ignore[attr-defined]
    return resolve


async def unresolvable(host: str, port: int) -> Sequence[tuple[Any, ...]]:
    raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")


def refusal(url: str, resolve: Any, *, loopback_dev_flag: bool = False) -> str | None:
    settings = Settings(webhook_allow_http_loopback=loopback_dev_flag)
    return asyncio.run(refused_destination(url, settings, resolve))


def test_a_name_with_an_internal_address_is_refused() -> None:
    for addresses in (
        ("10.0.0.7",),
        ("127.0.0.1",),
        ("169.254.169.254",),  # the cloud metadata service
        ("192.168.1.20",),
        ("::1",),
        ("fe80::1%eth0",),
        ("fd00::5",),
        ("93.184.216.34", "10.0.0.7"),  # one internal address among public ones is enough
    ):
        resolve = resolving_to(*addresses)
        assert refusal("https://hooks.example.com/in", resolve) is not None, addresses
        assert resolve.asked == [("hooks.example.com", 443)]


def test_a_name_with_only_public_addresses_may_be_sent_to() -> None:
    resolve = resolving_to("93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946")
    assert refusal("https://hooks.example.com:8443/in", resolve) is None
    assert resolve.asked == [("hooks.example.com", 8443)]


def test_literals_and_the_loopback_dev_flag_need_no_lookup() -> None:
    """A literal is judged as it is, again at each attempt: one registered under the loopback
    development flag is refused once the flag is off."""
    resolve = resolving_to("10.0.0.7")
    assert refusal("https://93.184.216.34/in", resolve) is None
    assert refusal("http://localhost:8080/in", resolve, loopback_dev_flag=True) is None
    assert refusal("http://127.0.0.1:8080/in", resolve, loopback_dev_flag=True) is None
    assert refusal("http://127.0.0.1:8080/in", resolve) is not None
    assert refusal("https://[fd00::5]/in", resolve) is not None
    assert refusal("https://2130706433/in", resolve) is not None  # 127.0.0.1 in shorthand
    assert resolve.asked == []
    assert refusal("https://localhost.example.com/in", resolve) is not None


def test_a_name_that_does_not_resolve_is_left_to_fail_as_a_connection_error() -> None:
    assert refusal("https://nowhere.invalid/in", unresolvable) is None


def test_a_name_the_resolver_cannot_encode_is_refused_instead_of_breaking_the_round() -> None:
    async def real(host: str, port: int) -> Sequence[tuple[Any, ...]]:
        return await asyncio.get_running_loop().getaddrinfo(host, port)

    # A label over 63 characters: getaddrinfo raises UnicodeError, not OSError.
    assert refusal(f"https://{'a' * 64}.example.com/in", real) is not None


def test_the_worker_does_not_send_to_a_refused_destination_and_retries_later(
    service: ServiceProcess,
) -> None:
    sent: list[httpx.Request] = []

    async def work(_session: Any, runtime: Runtime) -> tuple[Any, Any]:
        worker = DeliveryWorker(runtime)
        await worker.http.aclose()
        worker.http = httpx.AsyncClient(
            transport=httpx.MockTransport(
                lambda request: sent.append(request) or httpx.Response(200)
            )
        )
        endpoint = WebhookEndpoint(
            id="whe_" + "0" * 32,
            organization_id="org_" + "0" * 32,
            url="https://hooks.example.com/in",
            is_active=True,
            key_id=runtime.sealer.key_id,
        )
        endpoint.secret_ct = runtime.sealer.seal("whsec_test", secret_aad(endpoint.id))
        delivery = WebhookDelivery(
            id="msg_" + "0" * 32, event_type="connection.created", payload={"type": "x"}, attempts=1
        )
        try:
            worker.resolve = resolving_to("10.0.0.7")  # type: ignore[method-assign]
            refused = await worker._attempt(delivery, endpoint)
            worker.resolve = resolving_to("93.184.216.34")  # type: ignore[method-assign]
            allowed = await worker._attempt(delivery, endpoint)
        finally:
            await worker.close()
        return refused, allowed

    refused, allowed = service.run_db(work)
    assert refused.error == "destination refused" and not refused.final and not refused.ok
    assert allowed.ok and len(sent) == 1  # only the attempt to the public address went out
