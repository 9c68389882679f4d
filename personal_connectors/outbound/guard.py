"""The outbound guard: a call connects only to an address that was judged, never to a name.

``GuardedBackend`` is the httpcore network backend of the shared client. For each new
connection it resolves the host once, refuses the connection when any address is internal
(``addresses.refusal``) or when the name does not resolve, and connects to the judged addresses
themselves, so the HTTP client cannot look the name up again and be answered differently (DNS
rebinding). TLS still verifies the certificate against the host name (httpcore passes it as
the server name). With ``allow_internal`` (the operator's development setting) every address
is accepted, and plain http too; with ``allow_loopback`` only the loopback names
(``urls.LOOPBACK_HOSTS``) are, over plain http too, and only at loopback addresses.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass

import httpcore
import httpx

from personal_connectors.outbound.addresses import parse_address, refusal
from personal_connectors.outbound.urls import LOOPBACK_HOSTS

# The request extension that marks a webhook delivery (``extensions=WEBHOOK_CALL``): the
# shared client sends it under the webhook policy (``client.WebhookRouting``), which
# CONNECTORS_WEBHOOK_ALLOW_HTTP_LOOPBACK widens. httpcore ignores extensions it does not know.
WEBHOOK_EXTENSION = "personal_connectors.webhook"
WEBHOOK_CALL = {WEBHOOK_EXTENSION: True}

# ``host, port -> addresses``; the system resolver unless a unit test gives another.
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]


class DestinationRefused(httpx.ConnectError):
    """The guard refused the destination; ``reason`` says why, without the address."""

    def __init__(self, host: str, reason: str) -> None:
        self.host = host
        self.reason = reason
        super().__init__(f"{host} is not an allowed destination: {reason}")


async def system_resolver(host: str, port: int) -> Sequence[str]:
    """The addresses ``host`` has now, as the operating system's resolver answers."""
    answers = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(sockaddr[0]) for *_, sockaddr in answers))


@dataclass(frozen=True)
class OutboundPolicy:
    allow_internal: bool = False
    allow_loopback: bool = False
    resolver: Resolver = system_resolver

    def check_scheme(self, url: httpx.URL) -> None:
        """https only, unless internal destinations are allowed (local servers speak http)."""
        if url.scheme != "https" and not (self.allow_internal or self._loopback(url.host)):
            raise DestinationRefused(url.host, f"{url.scheme} is not https")

    def _loopback(self, host: str) -> bool:
        return self.allow_loopback and host.lower().strip("[]") in LOOPBACK_HOSTS

    async def addresses(self, host: str, port: int) -> Sequence[str]:
        """The addresses to connect to, every one judged; ``DestinationRefused`` otherwise."""
        literal = parse_address(host)
        if literal is not None:
            found: Sequence[str] = [str(literal)]
        else:
            try:
                found = await self.resolver(host, port)
            except (OSError, UnicodeError):  # gaierror, or a label the resolver cannot encode
                raise DestinationRefused(host, "the name does not resolve") from None
            if not found:
                raise DestinationRefused(host, "the name does not resolve")
        if not self.allow_internal:
            for text in found:
                address = parse_address(text)
                reason = "an unreadable address" if address is None else refusal(address)
                if address is not None and address.is_loopback and self._loopback(host):
                    reason = None
                if reason is not None:
                    shown = "it is" if literal is not None else "it resolves to"
                    raise DestinationRefused(host, f"{shown} {reason}")
        return found


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend with the policy in front of every new connection."""

    def __init__(self, policy: OutboundPolicy, inner: httpcore.AsyncNetworkBackend) -> None:
        self.policy = policy
        self.inner = inner

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                addresses = await self.policy.addresses(host, port)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"resolving {host} timed out") from None
        failure: Exception | None = None
        for address in addresses:
            try:
                return await self.inner.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except httpcore.ConnectError as exc:  # the next address of the name, if any
                failure = exc
        assert failure is not None
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise DestinationRefused(path, "unix sockets are not outbound destinations")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)
