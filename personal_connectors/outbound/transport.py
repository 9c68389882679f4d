"""The httpx transport of the shared client: httpcore's connection pool on the guarded backend.

httpx builds its own pool with httpcore's default network backend and offers no way to give it
another; this transport is that pool with ``GuardedBackend``, and the two translations httpx's
own transport makes: an httpx request into an httpcore one, and httpcore's exceptions (same
names, other classes) into httpx's, so callers catch ``httpx.TransportError`` as everywhere.

Each origin (scheme, host, port) has a pool of its own, bounded by ``limits``: httpcore scans
all of a pool's connections (and counts its idle ones for each) on every request, so one pool
for every destination would cost each request in proportion to the square of all connections
open; and one busy provider cannot take the connections another needs.

Through a proxy (``proxy``), the connection goes to the proxy, which the operator chose; the
target's addresses are judged before the request instead (the proxy resolves the name again,
so a rebinding answer is not caught there).
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import httpcore
import httpx

from personal_connectors.outbound.guard import GuardedBackend, OutboundPolicy
from personal_connectors.outbound.network import AsyncioBackend


@contextmanager
def _httpx_errors() -> Iterator[None]:
    """httpcore's exception as the httpx exception of the same name."""
    try:
        yield
    except (httpcore.TimeoutException, httpcore.NetworkError, httpcore.ProtocolError) as exc:
        for cls in type(exc).__mro__:
            mapped = getattr(httpx, cls.__name__, None)
            if isinstance(mapped, type) and issubclass(mapped, httpx.TransportError):
                raise mapped(str(exc)) from exc
        raise httpx.TransportError(str(exc)) from exc
    except (httpcore.UnsupportedProtocol, httpcore.ProxyError) as exc:
        raise getattr(httpx, type(exc).__name__)(str(exc)) from exc


class _ResponseStream(httpx.AsyncByteStream):
    def __init__(self, stream: Any) -> None:
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _httpx_errors():
            async for chunk in self._stream:
                yield chunk

    async def aclose(self) -> None:
        if hasattr(self._stream, "aclose"):
            with _httpx_errors():
                await self._stream.aclose()


class GuardedTransport(httpx.AsyncBaseTransport):
    def __init__(
        self,
        policy: OutboundPolicy,
        *,
        ssl_context: ssl.SSLContext,
        limits: httpx.Limits,
        proxy: httpx.Proxy | None = None,
    ) -> None:
        self.policy = policy
        self.proxy = proxy
        self._inner = AsyncioBackend()
        self._pool_limits: dict[str, Any] = {
            "ssl_context": ssl_context,
            "max_connections": limits.max_connections,
            "max_keepalive_connections": limits.max_keepalive_connections,
            "keepalive_expiry": limits.keepalive_expiry,
        }
        self._pools: dict[tuple[bytes, bytes, int | None], httpcore.AsyncConnectionPool] = {}

    def _pool_for(self, url: httpx.URL) -> httpcore.AsyncConnectionPool:
        origin = (url.raw_scheme, url.raw_host, url.port)
        pool = self._pools.get(origin)
        if pool is not None:
            return pool
        proxy = self.proxy
        if proxy is None:
            pool = httpcore.AsyncConnectionPool(
                network_backend=GuardedBackend(self.policy, self._inner), **self._pool_limits
            )
        else:
            pool = httpcore.AsyncHTTPProxy(
                proxy_url=httpcore.URL(
                    scheme=proxy.url.raw_scheme,
                    host=proxy.url.raw_host,
                    port=proxy.url.port,
                    target=proxy.url.raw_path,
                ),
                proxy_auth=proxy.raw_auth,
                proxy_headers=proxy.headers.raw,
                proxy_ssl_context=proxy.ssl_context,
                network_backend=self._inner,
                **self._pool_limits,
            )
        self._pools[origin] = pool
        return pool

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.AsyncByteStream)
        url = request.url
        self.policy.check_scheme(url)
        if self.proxy is not None:
            default_port = 443 if url.scheme == "https" else 80
            await self.policy.addresses(url.host, url.port or default_port)
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with _httpx_errors():
            response = await self._pool_for(url).handle_async_request(core_request)
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_ResponseStream(response.stream),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        for pool in self._pools.values():
            await pool.aclose()
        self._pools.clear()
