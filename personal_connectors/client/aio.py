"""``AsyncConnectors``: the asyncio client, the same calls as ``Connectors`` with ``await``.
Every call is built and read by ``core``; this module only sends it, and makes concurrent
tasks asking for one token wait for one request."""

from __future__ import annotations

import asyncio
import builtins
import copy
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from types import TracebackType
from typing import Any, Self, TypeVar, Unpack

import httpx

from personal_connectors.client.core import (
    DEFAULT_TIMEOUT_SECONDS,
    AuthorizeOptions,
    Call,
    ConnectionFilters,
    Core,
    FlightKey,
    Page,
    ProxyOptions,
    TokenCache,
    authorize_body,
    scope_list,
)
from personal_connectors.client.proxy import ProxyVerbs
from personal_connectors.client.types import (
    Authorization,
    Completion,
    Connection,
    EndUser,
    Health,
    TestResult,
    Token,
)

T = TypeVar("T")


class _Flights:
    """One request per key at a time: the tasks that ask while it runs await its result. The
    request runs as a task of its own, so a caller that is cancelled does not cancel it for
    the others."""

    def __init__(self) -> None:
        self._running: dict[FlightKey, asyncio.Task[Token]] = {}

    async def run(self, key: FlightKey, work: Callable[[], Awaitable[Token]]) -> Token:
        task = self._running.get(key)
        if task is None:
            task = asyncio.ensure_future(work())
            self._running[key] = task
            task.add_done_callback(lambda done: self._finished(key, done))
        return await asyncio.shield(task)

    def _finished(self, key: FlightKey, task: asyncio.Task[Token]) -> None:
        if self._running.get(key) is task:
            del self._running[key]
        if not task.cancelled():
            task.exception()  # retrieved, even when every caller was cancelled


class AsyncConnectors:
    """The asyncio twin of ``Connectors`` (same arguments; ``http`` an ``httpx.AsyncClient``)."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        organization_id: str | None = None,
        end_user_id: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self._owns_http = http is None
        self._http = http if http is not None else httpx.AsyncClient(timeout=timeout)
        self._core = Core(
            self._http.build_request,
            base_url,
            api_key,
            organization_id,
            end_user_id,
            timeout,
            TokenCache(),
        )
        self._flights = _Flights()
        self.end_users = AsyncEndUsers(self)

    @property
    def end_user_id(self) -> str | None:
        return self._core.end_user_id

    def for_end_user(self, end_user_id: str) -> AsyncConnectors:
        """A client acting for ``end_user_id`` that shares this one's httpx client and token
        cache (close this one, not it)."""
        derived = copy.copy(self)  # the same httpx client, cache and flights
        derived._owns_http = False
        derived._core = self._core.bound_to(end_user_id)
        derived.end_users = AsyncEndUsers(derived)
        return derived

    async def send(self, call: Call[T]) -> T:
        # Never followed: a redirect would carry the key to wherever the provider points.
        return call.parse(await self._http.send(call.request, follow_redirects=False))

    async def _all(self, call: Call[Page[T]] | None) -> AsyncIterator[T]:
        while call is not None:
            page = await self.send(call)
            for item in page.items:
                yield item
            call = page.next

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- connections ------------------------------------------------------------------------

    def iter_connections(self, **filters: Unpack[ConnectionFilters]) -> AsyncIterator[Connection]:
        """The caller's connections, newest first, fetched a page at a time as iterated."""
        return self._all(self._core.list_connections(filters))

    async def connections(self, **filters: Unpack[ConnectionFilters]) -> list[Connection]:
        """Every connection of the caller (all pages, newest first)."""
        return [connection async for connection in self.iter_connections(**filters)]

    async def get(self, connection_id: str) -> Connection:
        return await self.send(self._core.get_connection(connection_id))

    async def update(
        self,
        connection_id: str,
        *,
        tags: Mapping[str, str | None] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Connection:
        """Merge ``tags`` and ``metadata`` into the connection's (a None value removes a key)."""
        return await self.send(self._core.update_connection(connection_id, tags, metadata))

    async def set_active(self, connection_id: str, is_active: bool) -> None:
        await self.send(self._core.set_active(connection_id, is_active))

    async def delete(self, connection_id: str) -> None:
        """Disconnect: revoked at the provider, deleted here (and forgotten by the cache)."""
        await self.send(self._core.delete_connection(connection_id))

    async def test(self, connection_id: str) -> TestResult:
        return await self.send(self._core.test_connection(connection_id))

    async def health(self, connection_id: str) -> Health:
        return await self.send(self._core.health(connection_id))

    # -- tokens -----------------------------------------------------------------------------

    async def token(
        self,
        connection_id: str,
        required_scopes: str | Iterable[str] | None = None,
        *,
        force_refresh: bool = False,
    ) -> Token:
        """The connection's token, from the cache until 60 s before it expires; the tasks
        asking for one that is not cached share one request."""
        required = scope_list(required_scopes)
        core = self._core
        if not force_refresh and (cached := core.cached_token(connection_id, required)):
            return cached

        async def fetch() -> Token:
            if not force_refresh and (cached := core.cached_token(connection_id, required)):
                return cached
            return await self.send(core.token(connection_id, required, force_refresh))

        key = core.flight_key(connection_id, required, force_refresh)
        return await self._flights.run(key, fetch)

    # -- flows ------------------------------------------------------------------------------

    async def authorize(
        self, connector_type: str, **options: Unpack[AuthorizeOptions]
    ) -> Authorization:
        return await self.send(self._core.authorize(authorize_body(connector_type, options)))

    async def complete(
        self, state_token: str, *, wait: int | None = None, verifier: str | None = None
    ) -> Completion:
        """The flow's outcome; ``wait`` (0 to 60 s) holds the answer until it finishes."""
        return await self.send(self._core.complete(state_token, wait, verifier))

    # -- proxy ------------------------------------------------------------------------------

    def proxy(self, connection_id: str) -> AsyncProxy:
        return AsyncProxy(self, connection_id)


class AsyncProxy(ProxyVerbs[Awaitable[httpx.Response]]):
    def __init__(self, client: AsyncConnectors, connection_id: str) -> None:
        self._client = client
        self.connection_id = connection_id

    def request(
        self, method: str, path: str, **options: Unpack[ProxyOptions]
    ) -> Awaitable[httpx.Response]:
        call = self._client._core.proxy(self.connection_id, method, path, **options)
        return self._client.send(call)


class AsyncEndUsers:
    """The organization's end users (SPEC §8; a service key or an admin's key)."""

    def __init__(self, client: AsyncConnectors) -> None:
        self._client = client

    async def put(
        self,
        end_user_id: str,
        *,
        email: str | None = None,
        display_name: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> EndUser:
        call = self._client._core.put_end_user(end_user_id, email, display_name, tags)
        return await self._client.send(call)

    async def get(self, end_user_id: str) -> EndUser:
        return await self._client.send(self._client._core.get_end_user(end_user_id))

    def iter(self, *, page_size: int | None = None) -> AsyncIterator[EndUser]:
        return self._client._all(self._client._core.list_end_users(page_size))

    async def list(self, *, page_size: int | None = None) -> builtins.list[EndUser]:
        return [end_user async for end_user in self.iter(page_size=page_size)]

    async def delete(self, end_user_id: str) -> None:
        """Erase the end user: every connection revoked and deleted, then the end user."""
        await self._client.send(self._client._core.delete_end_user(end_user_id))
