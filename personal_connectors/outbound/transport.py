"""The httpx transport of the shared client: httpcore's connection pool on the guarded backend.

httpx builds its own pool with httpcore's default network backend and offers no way to give it
another; this transport is that pool with ``GuardedBackend``, and the two translations httpx's
own transport makes: an httpx request into an httpcore one, and httpcore's exceptions (same
names, other classes) into httpx's, so callers catch ``httpx.TransportError`` as everywhere.

Each origin (scheme, host, port) has ``limits.max_connections`` slots, each an httpcore pool
of one connection (``_Origin``): a request waits here for a free slot, at most its pool
timeout, and takes the one freed last, whose connection is most likely still open. httpcore's
pool scans all its connections for each queued request whenever a request starts or ends, so
a pool of many connections with requests waiting in it costs CPU in proportion to both; a pool
of one costs nothing to scan. And one busy provider cannot take the connections another needs.

Through a proxy (``proxy``), the connection goes to the proxy, which the operator chose; the
target's addresses are judged before the request instead (the proxy resolves the name again,
so a rebinding answer is not caught there).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpcore
import httpx

from personal_connectors.outbound.guard import GuardedBackend, OutboundPolicy
from personal_connectors.outbound.network import AsyncioBackend

# Origins kept at once; past it, the least recently used idle half is closed and forgotten.
MAX_ORIGINS = 256


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


class _Origin:
    """One origin's slots: a request takes a free one (the last freed first) and gives it back
    when its response is closed; slots open their pool when first taken."""

    def __init__(self, new_pool: Callable[[], httpcore.AsyncConnectionPool], slots: int) -> None:
        self._new_pool = new_pool
        self._turns = asyncio.Semaphore(slots)
        self._free: list[httpcore.AsyncConnectionPool | None] = [None] * slots
        self.pools: list[httpcore.AsyncConnectionPool] = []  # every slot opened, for aclose()
        self.taken = 0  # slots taken or being waited for

    @property
    def idle(self) -> bool:
        return self.taken == 0

    async def take(self, timeout: float | None) -> httpcore.AsyncConnectionPool:  # noqa: ASYNC109
        self.taken += 1
        try:
            async with asyncio.timeout(timeout):
                await self._turns.acquire()
        except TimeoutError:
            self.taken -= 1
            raise httpx.PoolTimeout("no connection to this origin became free in time") from None
        except BaseException:
            self.taken -= 1
            raise
        pool = self._free.pop()
        if pool is None:
            pool = self._new_pool()
            self.pools.append(pool)
        return pool

    def give_back(self, pool: httpcore.AsyncConnectionPool) -> None:
        self._free.append(pool)
        self.taken -= 1
        self._turns.release()

    async def aclose(self) -> None:
        for pool in self.pools:
            await pool.aclose()


class _ResponseStream(httpx.AsyncByteStream):
    def __init__(self, stream: Any, origin: _Origin, slot: httpcore.AsyncConnectionPool) -> None:
        self._stream = stream
        self._origin = origin
        self._slot: httpcore.AsyncConnectionPool | None = slot

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _httpx_errors():
            async for chunk in self._stream:
                yield chunk

    async def aclose(self) -> None:
        try:
            if hasattr(self._stream, "aclose"):
                with _httpx_errors():
                    await self._stream.aclose()
        finally:
            if self._slot is not None:
                self._origin.give_back(self._slot)
                self._slot = None


class GuardedTransport(httpx.AsyncBaseTransport):
    def __init__(
        self,
        policy: OutboundPolicy,
        *,
        ssl_context: ssl.SSLContext,
        limits: httpx.Limits,
        proxy: httpx.Proxy | None = None,
        max_origins: int = MAX_ORIGINS,
    ) -> None:
        self.policy = policy
        self.proxy = proxy
        self._inner = AsyncioBackend()
        self.max_origins = max_origins
        self._slots = limits.max_connections or 100  # (httpx's default, for None)
        self._slot_limits: dict[str, Any] = {
            "ssl_context": ssl_context,
            "max_connections": 1,
            "max_keepalive_connections": 1,
            "keepalive_expiry": limits.keepalive_expiry,
        }
        self._origins: dict[tuple[bytes, bytes, int | None], _Origin] = {}

    async def _origin(self, url: httpx.URL) -> _Origin:
        key = (url.raw_scheme, url.raw_host, url.port)
        origin = self._origins.get(key)
        if origin is None:
            if len(self._origins) >= self.max_origins:
                await self._forget_idle_origins()
            origin = self._origins[key] = _Origin(self._new_slot, self._slots)
        else:  # most recently used last: the dict's order is the order to forget them in
            self._origins[key] = self._origins.pop(key)
        return origin

    async def _forget_idle_origins(self) -> None:
        """Close and forget the least recently used half of the origins no request is using:
        destinations come and go (webhook receivers, issuers, MCP servers users name), and
        each kept origin holds its slots and idle connections."""
        idle = [key for key, origin in self._origins.items() if origin.idle]
        for key in idle[: max(1, len(self._origins) // 2)]:
            await self._origins.pop(key).aclose()

    def _new_slot(self) -> httpcore.AsyncConnectionPool:
        proxy = self.proxy
        if proxy is None:
            return httpcore.AsyncConnectionPool(
                network_backend=GuardedBackend(self.policy, self._inner), **self._slot_limits
            )
        return httpcore.AsyncHTTPProxy(
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
            **self._slot_limits,
        )

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
        origin = await self._origin(url)
        slot = await origin.take(request.extensions.get("timeout", {}).get("pool"))
        try:
            with _httpx_errors():
                response = await slot.handle_async_request(core_request)
        except BaseException:
            origin.give_back(slot)
            raise
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_ResponseStream(response.stream, origin, slot),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        for origin in self._origins.values():
            await origin.aclose()
        self._origins.clear()
