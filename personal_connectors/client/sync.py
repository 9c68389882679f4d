"""``Connectors``: the blocking client. Every call is built and read by ``core``; this module
only sends it, and makes concurrent threads asking for one token wait for one request."""

from __future__ import annotations

import builtins
import copy
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future
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
    """One request per key at a time: the threads that ask while it runs get its result."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: dict[FlightKey, Future[Token]] = {}

    def run(self, key: FlightKey, work: Callable[[], Token]) -> Token:
        with self._lock:
            running = self._running.get(key)
            if running is None:
                future = self._running[key] = Future()
        if running is not None:
            return running.result()
        try:
            token = work()
        except BaseException as exc:
            future.set_exception(exc)
            raise
        else:
            future.set_result(token)
            return token
        finally:
            with self._lock:
                del self._running[key]


class Connectors:
    """A client of one Personal Connectors service for one caller.

    ``api_key``: a user key, or a service key with ``end_user_id`` naming the platform's user
    it acts for (``for_end_user`` gives a client for another). ``organization_id`` may be None
    for a service key (its organization is implied). ``http``: an ``httpx.Client`` to use
    (closed by its owner, not by this client); by default the client makes its own.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        organization_id: str | None = None,
        end_user_id: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        http: httpx.Client | None = None,
    ) -> None:
        self._owns_http = http is None
        self._http = http if http is not None else httpx.Client(timeout=timeout)
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
        self.end_users = EndUsers(self)

    @property
    def end_user_id(self) -> str | None:
        return self._core.end_user_id

    def for_end_user(self, end_user_id: str) -> Connectors:
        """A client acting for ``end_user_id`` that shares this one's httpx client and token
        cache (close this one, not it)."""
        derived = copy.copy(self)  # the same httpx client, cache and flights
        derived._owns_http = False
        derived._core = self._core.bound_to(end_user_id)
        derived.end_users = EndUsers(derived)
        return derived

    def send(self, call: Call[T]) -> T:
        # Never followed: a redirect would carry the key to wherever the provider points.
        return call.parse(self._http.send(call.request, follow_redirects=False))

    def _all(self, call: Call[Page[T]] | None) -> Iterator[T]:
        while call is not None:
            page = self.send(call)
            yield from page.items
            call = page.next

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- connections ------------------------------------------------------------------------

    def iter_connections(self, **filters: Unpack[ConnectionFilters]) -> Iterator[Connection]:
        """The caller's connections, newest first, fetched a page at a time as iterated."""
        return self._all(self._core.list_connections(filters))

    def connections(self, **filters: Unpack[ConnectionFilters]) -> list[Connection]:
        """Every connection of the caller (all pages, newest first)."""
        return list(self.iter_connections(**filters))

    def get(self, connection_id: str) -> Connection:
        return self.send(self._core.get_connection(connection_id))

    def update(
        self,
        connection_id: str,
        *,
        tags: Mapping[str, str | None] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Connection:
        """Merge ``tags`` and ``metadata`` into the connection's (a None value removes a key)."""
        return self.send(self._core.update_connection(connection_id, tags, metadata))

    def set_active(self, connection_id: str, is_active: bool) -> None:
        self.send(self._core.set_active(connection_id, is_active))

    def delete(self, connection_id: str) -> None:
        """Disconnect: revoked at the provider, deleted here (and forgotten by the cache)."""
        self.send(self._core.delete_connection(connection_id))

    def test(self, connection_id: str) -> TestResult:
        return self.send(self._core.test_connection(connection_id))

    def health(self, connection_id: str) -> Health:
        return self.send(self._core.health(connection_id))

    # -- tokens -----------------------------------------------------------------------------

    def token(
        self,
        connection_id: str,
        required_scopes: str | Iterable[str] | None = None,
        *,
        force_refresh: bool = False,
    ) -> Token:
        """The connection's token, from the cache until 60 s before it expires; the threads
        asking for one that is not cached share one request."""
        required = scope_list(required_scopes)
        core = self._core
        if not force_refresh and (cached := core.cached_token(connection_id, required)):
            return cached

        def fetch() -> Token:
            if not force_refresh and (cached := core.cached_token(connection_id, required)):
                return cached
            return self.send(core.token(connection_id, required, force_refresh))

        return self._flights.run(core.flight_key(connection_id, required, force_refresh), fetch)

    # -- flows ------------------------------------------------------------------------------

    def authorize(self, connector_type: str, **options: Unpack[AuthorizeOptions]) -> Authorization:
        return self.send(self._core.authorize(authorize_body(connector_type, options)))

    def complete(
        self, state_token: str, *, wait: int | None = None, verifier: str | None = None
    ) -> Completion:
        """The flow's outcome; ``wait`` (0 to 60 s) holds the answer until it finishes."""
        return self.send(self._core.complete(state_token, wait, verifier))

    # -- proxy ------------------------------------------------------------------------------

    def proxy(self, connection_id: str) -> Proxy:
        return Proxy(self, connection_id)


class Proxy(ProxyVerbs[httpx.Response]):
    def __init__(self, client: Connectors, connection_id: str) -> None:
        self._client = client
        self.connection_id = connection_id

    def request(self, method: str, path: str, **options: Unpack[ProxyOptions]) -> httpx.Response:
        call = self._client._core.proxy(self.connection_id, method, path, **options)
        return self._client.send(call)


class EndUsers:
    """The organization's end users (SPEC §8; a service key or an admin's key)."""

    def __init__(self, client: Connectors) -> None:
        self._client = client

    def put(
        self,
        end_user_id: str,
        *,
        email: str | None = None,
        display_name: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> EndUser:
        return self._client.send(
            self._client._core.put_end_user(end_user_id, email, display_name, tags)
        )

    def get(self, end_user_id: str) -> EndUser:
        return self._client.send(self._client._core.get_end_user(end_user_id))

    def iter(self, *, page_size: int | None = None) -> Iterator[EndUser]:
        return self._client._all(self._client._core.list_end_users(page_size))

    def list(self, *, page_size: int | None = None) -> builtins.list[EndUser]:
        return builtins.list(self.iter(page_size=page_size))

    def delete(self, end_user_id: str) -> None:
        """Erase the end user: every connection revoked and deleted, then the end user."""
        self._client.send(self._client._core.delete_end_user(end_user_id))
