"""The one outbound ``httpx.AsyncClient`` of a process, built from the settings.

Every call to a provider, a discovery document, a revocation endpoint or a webhook receiver
goes through it, so they share one connection pool (keep-alive), one TLS context (the CA
bundle read once) and the guard (webhook deliveries, where
``CONNECTORS_WEBHOOK_ALLOW_HTTP_LOOPBACK`` widens the rule for them, through a transport of
their own: ``WebhookRouting``). Timeouts are per call
(``timeout=``); the client's default is the provider timeout. No redirect is followed, and no
cookie is ever kept: the jar's policy accepts none, so nothing a provider sets reaches another
provider or another user's call.
Proxies named in the environment (``HTTPS_PROXY``, ``NO_PROXY``, …) are honoured.
"""

from __future__ import annotations

import functools
import ipaddress
import ssl
import urllib.request
from collections.abc import AsyncIterator, Mapping
from dataclasses import replace
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any

import httpx

from personal_connectors.config import Settings
from personal_connectors.outbound.guard import WEBHOOK_EXTENSION, OutboundPolicy
from personal_connectors.outbound.transport import GuardedTransport
from personal_connectors.telemetry import tracing

USER_AGENT = "personal-connectors/0.1"
# Connections per destination (origin): enough that a busy refresher (64 refreshes in flight
# in bench/refresher.py) and the token path's callers never queue for one behind a slow
# provider; beyond, a request waits for a connection (at most the call's pool timeout).
# An idle connection is kept 4 s, under the 5 s after which Node's and uvicorn's servers close
# theirs (undici keeps 4 s for the same reason): a request sent on a connection the server is
# closing that instant fails without an answer, and a POST there cannot safely be sent again.
LIMITS = httpx.Limits(max_connections=64, max_keepalive_connections=64, keepalive_expiry=4.0)


def no_cookies() -> CookieJar:
    """A jar that accepts no cookie from any domain (httpx keeps a jar it is given as it is)."""
    return CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))


class OutboundClient(httpx.AsyncClient):
    """The shared client, plus ``send_plain``: a request handed straight to its transport.

    httpx's client layer (merging defaults into the request, the cookie jar's per-response
    work, the auth and redirect steps) is a large share of a token request's client CPU, and
    the OAuth token calls use none of it here: no cookie is kept, no redirect followed, client
    authentication is in the headers. Without proxy mounts every URL
    uses the one transport, so ``send_plain`` goes there through httpx's public transport
    interface; with mounts it is an ordinary ``send``.
    """

    def __init__(self, *, plain: httpx.AsyncBaseTransport | None, **options: Any) -> None:
        super().__init__(**options)
        self.plain = plain

    async def send_plain(
        self, method: str, url: str, *, headers: dict[str, str], content: bytes, call_seconds: float
    ) -> httpx.Response:
        """The answer, read whole; the client's default headers under ``headers``."""
        request = self.plain_request(
            method, url, headers=list(headers.items()), content=content, call_seconds=call_seconds
        )
        if self.plain is None:
            return await self.send(request)
        response = await self.send_streamed(request)
        try:
            await response.aread()
        finally:
            await response.aclose()
        return response

    def plain_request(
        self,
        method: str,
        url: str | httpx.URL,
        *,
        headers: list[tuple[str, str]],
        content: bytes | AsyncIterator[bytes],
        call_seconds: float | Mapping[str, float | None],
    ) -> httpx.Request:
        """A request as ``build_request`` makes it here: the client's default headers but those
        ``headers`` name (which keep their order and repeats), the call's timeout
        (``call_seconds``: one for every phase, or httpx's timeout extension itself)."""
        given = {name.lower() for name, _ in headers}
        merged = [
            (name.decode("latin-1"), value.decode("latin-1"))
            for name, value in self.headers.raw
            if name.decode("latin-1").lower() not in given
        ]
        merged.extend(headers)
        timeouts = (
            dict(call_seconds) if isinstance(call_seconds, Mapping) else _timeouts(call_seconds)
        )
        extensions = {"timeout": timeouts}
        return httpx.Request(method, url, headers=merged, content=content, extensions=extensions)

    async def send_streamed(self, request: httpx.Request) -> httpx.Response:
        """The answer with its body still to read (close it); ``send(request, stream=True)``."""
        if self.plain is None:
            return await self.send(request, stream=True)
        response = await self.plain.handle_async_request(request)
        response.request = request
        return response


@functools.cache
def ca_bundle_context() -> ssl.SSLContext:
    """The TLS context of every outbound call: the CA bundle (or ``SSL_CERT_FILE`` or
    ``SSL_CERT_DIR``) read once per process, not once per client, as reading it is costly.
    Shared by every client of the process: none may change it (httpcore sets the same ALPN list,
    HTTP/1.1, on each TLS connect, so no client sharing it may turn HTTP/2 on)."""
    return httpx.create_ssl_context(trust_env=True)


@functools.cache
def _timeouts(call_seconds: float) -> dict[str, float | None]:
    """The ``timeout`` extension httpx makes of ``timeout=call_seconds`` (shared: read only)."""
    return httpx.Timeout(call_seconds).as_dict()


def create_client(
    settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None
) -> OutboundClient:
    """``transport`` replaces the network (unit tests' ``httpx.MockTransport``)."""
    policy = OutboundPolicy(
        allow_internal=settings.outbound_allow_internal,
        allow_loopback=settings.allow_http_loopback,
    )
    webhook_policy = policy
    if settings.webhook_loopback_allowed != settings.loopback_allowed:
        webhook_policy = replace(policy, allow_loopback=True)
    ssl_context = ca_bundle_context()
    plain = transport
    if transport is None:
        plain = GuardedTransport(policy, ssl_context=ssl_context, limits=LIMITS)
        transport = _with_webhooks(plain, webhook_policy, ssl_context=ssl_context, limits=LIMITS)
        mounts = _environment_proxies(policy, webhook_policy, ssl_context)
    else:
        mounts = {}
    client = OutboundClient(
        plain=None if mounts else plain,
        transport=transport,
        mounts=mounts,
        timeout=settings.provider_timeout_seconds,
        follow_redirects=False,
        headers={"User-Agent": USER_AGENT},
        cookies=no_cookies(),
        trust_env=True,
    )
    tracing.instrument_client(client)  # a span per call when tracing is on
    return client


class WebhookRouting(httpx.AsyncBaseTransport):
    """Requests marked ``WEBHOOK_CALL`` go to a transport of their own, judged by the webhook
    policy, with connections of their own (so one it allowed never serves another call); every
    other request to the shared one. Only when the webhook policy is wider (``_with_webhooks``)."""

    def __init__(self, shared: GuardedTransport, webhooks: GuardedTransport) -> None:
        self.shared = shared
        self.webhooks = webhooks

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        marked = request.extensions.get(WEBHOOK_EXTENSION)
        return await (self.webhooks if marked else self.shared).handle_async_request(request)

    async def aclose(self) -> None:
        await self.shared.aclose()
        await self.webhooks.aclose()


def _with_webhooks(
    shared: GuardedTransport, webhook_policy: OutboundPolicy, **options: Any
) -> httpx.AsyncBaseTransport:
    if webhook_policy == shared.policy:
        return shared
    return WebhookRouting(shared, GuardedTransport(webhook_policy, **options))


def _environment_proxies(
    policy: OutboundPolicy, webhook_policy: OutboundPolicy, ssl_context: ssl.SSLContext
) -> dict[str, httpx.AsyncBaseTransport | None]:
    """Mounts for the proxies the environment names, as httpx reads them for its own transport
    (it ignores them for a client given a transport): ``NO_PROXY`` hosts go direct."""
    found = urllib.request.getproxies()
    mounts: dict[str, httpx.AsyncBaseTransport | None] = {}
    for scheme in ("http", "https", "all"):
        if url := found.get(scheme):
            proxy = httpx.Proxy(url if "://" in url else f"http://{url}")
            options: dict[str, Any] = {"ssl_context": ssl_context, "limits": LIMITS, "proxy": proxy}
            guarded = GuardedTransport(policy, **options)
            mounts[f"{scheme}://"] = _with_webhooks(guarded, webhook_policy, **options)
    if not mounts:
        return {}
    for host in (item.strip() for item in found.get("no", "").split(",")):
        if host == "*":
            return {}
        if host:
            mounts[_no_proxy_pattern(host)] = None  # None: the client's own transport
    return mounts


def _no_proxy_pattern(host: str) -> str:
    """curl's NO_PROXY reading: a domain covers its subdomains, an address only itself."""
    if "://" in host:
        return host
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return f"all://{host}" if host == "localhost" else f"all://*{host}"
    return f"all://[{address}]" if address.version == 6 else f"all://{address}"
