"""The outbound guard: a host is resolved once, every address judged, and the connection made to
a judged address; http, internal destinations and names that do not resolve are refused unless
the operator allows internal destinations."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import httpx
import pytest

from personal_connectors.config import Settings
from personal_connectors.outbound.client import LIMITS, create_client
from personal_connectors.outbound.guard import WEBHOOK_CALL, DestinationRefused, OutboundPolicy
from personal_connectors.outbound.transport import GuardedTransport
from tests.support.loopback import LoopbackServer, QuietHandler


def resolving_to(*addresses: str) -> OutboundPolicy:
    async def resolve(host: str, port: int) -> Sequence[str]:
        return list(addresses)

    return OutboundPolicy(resolver=resolve)


async def unresolvable(host: str, port: int) -> Sequence[str]:
    raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")


def judged(policy: OutboundPolicy, host: str) -> Sequence[str]:
    return asyncio.run(policy.addresses(host, 443))


def refused(policy: OutboundPolicy, host: str) -> str:
    with pytest.raises(DestinationRefused) as caught:
        judged(policy, host)
    return caught.value.reason


def test_a_name_with_any_internal_address_is_refused() -> None:
    assert refused(resolving_to("10.0.0.7"), "hooks.example.com") == (
        "it resolves to a private address"
    )
    assert refused(resolving_to("93.184.216.34", "169.254.169.254"), "x.example") == (
        "it resolves to a link-local address"
    )
    assert refused(resolving_to("64:ff9b::a9fe:a9fe"), "x.example").startswith(
        "it resolves to a NAT64 address embedding a link-local"
    )


def test_a_name_with_only_public_addresses_is_connected_to_by_those_addresses() -> None:
    addresses = ("93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946")
    assert list(judged(resolving_to(*addresses), "hooks.example.com")) == list(addresses)


def test_a_name_that_does_not_resolve_is_refused() -> None:
    assert refused(OutboundPolicy(resolver=unresolvable), "nowhere.invalid") == (
        "the name does not resolve"
    )
    # A label over 63 characters: the system resolver raises UnicodeError, not OSError.
    assert refused(OutboundPolicy(), f"{'a' * 64}.example.com") == "the name does not resolve"


def test_odd_literals_are_judged_without_a_lookup_and_shorthands_by_the_real_resolver() -> None:
    never = OutboundPolicy(resolver=unresolvable)
    assert refused(never, "::127.0.0.1") == "it is an IPv4-compatible address"
    assert refused(never, "2002:7f00:1::") == "it is a 6to4 address embedding a loopback address"
    assert refused(OutboundPolicy(), "2130706433") == "it resolves to a loopback address"
    assert refused(OutboundPolicy(), "localhost") == "it resolves to a loopback address"


def test_the_operator_setting_allows_internal_destinations_and_http() -> None:
    allowed = OutboundPolicy(allow_internal=True)
    assert list(judged(allowed, "localhost")) == ["127.0.0.1"]
    allowed.check_scheme(httpx.URL("http://127.0.0.1:8080/"))
    with pytest.raises(DestinationRefused, match="http is not https"):
        OutboundPolicy().check_scheme(httpx.URL("http://hooks.example.com/"))


def test_the_loopback_setting_allows_this_machines_loopback_names_only() -> None:
    """CONNECTORS_ALLOW_HTTP_LOOPBACK: http to 127.0.0.1, [::1] and localhost, at loopback
    addresses; no other internal destination, no other name that resolves to loopback."""

    async def resolve(host: str, port: int) -> Sequence[str]:
        return {"localhost": ["127.0.0.1", "::1"], "rebind.example": ["127.0.0.1"]}.get(
            host, ["10.0.0.7"]
        )

    loopback = OutboundPolicy(allow_loopback=True, resolver=resolve)
    for host in ("127.0.0.1", "::1", "localhost"):
        assert judged(loopback, host)
        loopback.check_scheme(httpx.URL(f"http://{'[::1]' if host == '::1' else host}:8080/"))
    assert refused(loopback, "rebind.example") == "it resolves to a loopback address"
    assert refused(loopback, "10.0.0.7") == "it is a private address"
    assert refused(loopback, "internal.example") == "it resolves to a private address"
    with pytest.raises(DestinationRefused, match="http is not https"):
        loopback.check_scheme(httpx.URL("http://10.0.0.7/"))
    with pytest.raises(DestinationRefused, match="http is not https"):
        loopback.check_scheme(httpx.URL("http://rebind.example/"))


@dataclass
class LocalServer:
    url: str  # http://127.0.0.1:PORT
    port: int
    requests: list[str]


@pytest.fixture
def local_server() -> Iterator[LocalServer]:
    """Answers every GET with a cookie, and counts the requests that reach it."""
    seen: list[str] = []

    class Handler(QuietHandler):
        def do_GET(self) -> None:
            seen.append(self.path)
            self.send_response(200)
            self.send_header("Set-Cookie", "session=from-provider-a; Path=/")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

    server = LoopbackServer(Handler)
    yield LocalServer(server.base_url, int(server.base_url.rsplit(":", 1)[1]), seen)
    server.close()


def shared_client(allow_internal: bool) -> httpx.AsyncClient:
    settings = Settings(_env_file=None, outbound_allow_internal=allow_internal)  # type: ignore[call-arg]
    return create_client(settings)


def test_the_connection_goes_to_the_judged_address_not_to_the_name_again(
    local_server: LocalServer,
) -> None:
    """A name only the guard's resolver knows is reached at the address the guard judged: the
    connection cannot look the name up a second time (DNS rebinding)."""
    asked: list[str] = []

    async def resolve(host: str, port: int) -> Sequence[str]:
        asked.append(host)
        return ["127.0.0.1"]

    transport = GuardedTransport(
        OutboundPolicy(allow_internal=True, resolver=resolve),
        ssl_context=httpx.create_ssl_context(),
        limits=LIMITS,
    )

    async def main() -> int:
        async with httpx.AsyncClient(transport=transport) as http:
            response = await http.get(f"http://rebinding.invalid:{local_server.port}/x")
            return response.status_code

    assert asyncio.run(main()) == 200
    assert asked == ["rebinding.invalid"] and local_server.requests == ["/x"]


def test_the_shared_client_refuses_loopback_names_and_keeps_no_cookie(
    local_server: LocalServer,
) -> None:
    async def main() -> tuple[str, int]:
        async with shared_client(False) as http:
            with pytest.raises(DestinationRefused) as caught:
                await http.get(f"https://localhost:{local_server.port}/refused")
        async with shared_client(True) as http:
            first = await http.get(f"{local_server.url}/allowed")
            assert first.headers["set-cookie"].startswith("session=")
            second = await http.get(f"{local_server.url}/again")
            assert "cookie" not in second.request.headers
            return caught.value.reason, len(http.cookies)

    reason, cookies_kept = asyncio.run(main())
    assert reason == "it resolves to a loopback address"
    assert cookies_kept == 0
    assert local_server.requests == ["/allowed", "/again"]  # the refused call never connected


def test_the_webhook_loopback_setting_widens_webhook_deliveries_only(
    local_server: LocalServer,
) -> None:
    """CONNECTORS_WEBHOOK_ALLOW_HTTP_LOOPBACK: a request marked as a webhook delivery may go to
    this machine's loopback over http; every other call of the same client keeps the rule, even
    to the origin a delivery has just connected to (their connections are kept apart)."""
    settings = Settings(_env_file=None, webhook_allow_http_loopback=True)  # type: ignore[call-arg]
    assert settings.webhook_loopback_allowed and not settings.loopback_allowed

    async def main() -> list[str]:
        reasons = []
        async with create_client(settings) as http:
            delivered = await http.post(f"{local_server.url}/hook", extensions=WEBHOOK_CALL)
            assert delivered.status_code == 501  # (the server answers GETs only): it got there
            for url in (f"{local_server.url}/provider", f"https://127.0.0.1:{local_server.port}/"):
                with pytest.raises(DestinationRefused) as caught:
                    await http.get(url)
                reasons.append(caught.value.reason)
            webhook_to_private = http.post("http://10.0.0.7/hook", extensions=WEBHOOK_CALL)
            with pytest.raises(DestinationRefused) as caught:
                await webhook_to_private
            reasons.append(caught.value.reason)
        return reasons

    assert asyncio.run(main()) == [
        "http is not https",
        "it is a loopback address",
        "http is not https",  # loopback only: nothing else internal, even for a webhook
    ]
    assert local_server.requests == []  # the POST was no GET; the refused calls never connected
