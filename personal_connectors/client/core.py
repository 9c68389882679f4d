"""What the sync and async clients share: every call is built here once as a ``Call`` (the
``httpx.Request`` and how to read its answer), and the token cache lives here; ``sync`` and
``aio`` only send the request with their own httpx client and hand the response to ``parse``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, Literal, TypedDict, TypeVar
from urllib.parse import parse_qsl, quote, urlsplit

import httpx

from personal_connectors.client.errors import ConnectorsError
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

API_PATH = "/v1/personal-connectors"
DEFAULT_TIMEOUT_SECONDS = 30.0
# A cached token is handed out until this long before its ``expires_at`` (SPEC §9), so that a
# call made with it does not reach the provider expired.
TOKEN_MARGIN = timedelta(seconds=60)
# A token without ``expires_at`` (GitHub OAuth apps, API keys) is reused this long, so that a
# connection disabled or deleted elsewhere stops being handed out by this process soon after.
UNDATED_TOKEN_REUSE = timedelta(seconds=300)
# The header the proxy puts on every answer that came from the provider (SPEC §9).
PROXY_MARKER = "x-connectors-proxy"
PROXY_RETRIES = "X-Connectors-Retries"
JSON_ACCEPT = {"Accept": "application/json"}
DOT_SEGMENTS = {".": "%2E", "..": "%2E%2E"}

# The httpx client's ``build_request`` (sync and async have the same one): requests built with
# it get the client's own defaults (headers, cookies, timeout) too.
Builder = Callable[..., httpx.Request]
QueryValue = str | int
Query = list[tuple[str, QueryValue]]
TokenKey = tuple[str, str | None]  # (connection id, end user id)
FlightKey = tuple[str, str | None, tuple[str, ...], bool]


@dataclass(frozen=True)
class Call(Generic[T]):
    """One request to the service and how to read its answer (raising ``ConnectorsError``)."""

    request: httpx.Request
    parse: Callable[[httpx.Response], T]


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a list; ``next`` is the call for the following one (None on the last)."""

    items: list[T]
    next: Call[Page[T]] | None


class ConnectionFilters(TypedDict, total=False):
    """The list's filters: ``app_key``, ``status``, ``tags`` (all must match), ``page_size``
    (the service's ``limit``: 100 by default, at most 1,000) and ``force_check`` (check each
    connection with its provider first)."""

    app_key: str | None
    status: str | None
    tags: Mapping[str, str] | None
    page_size: int | None
    force_check: bool


class ProxyOptions(TypedDict, total=False):
    """What a proxied call may carry besides its method and path (all sent to the provider,
    except ``timeout`` and ``retries``: ``X-Connectors-Retries``, 0 to 5, for idempotent calls)."""

    params: Mapping[str, QueryValue] | list[tuple[str, QueryValue]] | None
    headers: Mapping[str, str] | None
    content: bytes | str | None
    data: Mapping[str, Any] | None
    files: Mapping[str, Any] | None
    json: Any
    timeout: float | None
    retries: int | None


def scope_list(scopes: str | Iterable[str] | None) -> tuple[str, ...]:
    """Required scopes as given (a space-separated string or a list), each once, in order."""
    if scopes is None:
        return ()
    named = scopes.split(" ") if isinstance(scopes, str) else scopes
    return tuple(dict.fromkeys(scope for scope in named if scope))


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class _Cached:
    token: Token
    reuse_until: datetime


class TokenCache:
    """Tokens per (connection, end user), each reused until ``TOKEN_MARGIN`` before it expires
    and only for callers whose required scopes it was granted. Shared by a client and the
    clients ``for_end_user`` derives from it; the lock makes it safe across threads (no lock is
    held while a request runs)."""

    def __init__(self, clock: Callable[[], datetime] = utcnow) -> None:
        self._clock = clock
        self._tokens: dict[TokenKey, _Cached] = {}
        self._lock = threading.Lock()

    def get(self, key: TokenKey, required: tuple[str, ...]) -> Token | None:
        with self._lock:
            cached = self._tokens.get(key)
        if cached is None or self._clock() >= cached.reuse_until:
            return None
        if not set(required) <= set(cached.token.scopes):
            return None  # the service decides: it may know better scopes, or refuse with 409
        return cached.token

    def put(self, key: TokenKey, token: Token) -> None:
        now = self._clock()
        if token.expires_at is None:
            until = now + UNDATED_TOKEN_REUSE
        else:
            expires = token.expires_at
            if expires.tzinfo is None:
                expires = expires.replace(tzinfo=UTC)
            until = expires - TOKEN_MARGIN
        with self._lock:
            if until > now:
                self._tokens[key] = _Cached(token, until)
            else:
                self._tokens.pop(key, None)

    def forget(self, key: TokenKey) -> None:
        """Forget one caller's token (the service refused it that token)."""
        with self._lock:
            self._tokens.pop(key, None)

    def drop(self, connection_id: str) -> None:
        """Forget the connection's tokens, for every end user (deleted or disabled)."""
        with self._lock:
            for key in [key for key in self._tokens if key[0] == connection_id]:
                del self._tokens[key]


def answer(response: httpx.Response) -> Any:
    """The JSON of a successful answer; a ``ConnectorsError`` for any other."""
    if not response.is_success:
        raise ConnectorsError.from_response(response)
    return response.json()


def nothing(response: httpx.Response) -> None:
    if not response.is_success:
        raise ConnectorsError.from_response(response)


def proxied(response: httpx.Response) -> httpx.Response:
    """The provider's answer as it is, whatever its status; the service's own refusal (no
    ``X-Connectors-Proxy`` header, the §2 envelope) as a ``ConnectorsError``."""
    if response.is_error and PROXY_MARKER not in response.headers:
        raise ConnectorsError.from_response(response)
    return response


def segment(value: str) -> str:
    """An id as one path segment: escaped, so that no id reaches another route."""
    return DOT_SEGMENTS.get(value) or quote(value, safe="")


def proxy_path(path: str) -> tuple[str, str]:
    """``path`` as the proxy route's tail and the query written in it, as written: one leading
    ``/`` dropped, and dot segments percent-encoded so that httpx does not resolve them into
    another route of the service (the service refuses them, encoded or not, with 400)."""
    route, _, query = path.removeprefix("/").partition("?")
    segments = [DOT_SEGMENTS.get(segment, segment) for segment in route.split("/")]
    return "/".join(segments), query


def api_root(base_url: str) -> str:
    """The API's root from the service's URL (``http://host:8080`` or already ending in the
    API path)."""
    root = base_url.rstrip("/")
    return root if root.endswith(API_PATH) else root + API_PATH


class Core:
    """Builds every request of the API for one caller (key, organization, end user)."""

    def __init__(
        self,
        build: Builder,
        base_url: str,
        api_key: str,
        organization_id: str | None,
        end_user_id: str | None,
        timeout: float,
        cache: TokenCache,
    ) -> None:
        self.build = build
        self.root = api_root(base_url)
        self.api_key = api_key
        self.organization_id = organization_id
        self.end_user_id = end_user_id
        self.timeout = timeout
        self.cache = cache

    def bound_to(self, end_user_id: str | None) -> Core:
        """The same caller acting for another end user (same httpx client, same cache)."""
        return Core(
            self.build,
            self.root,
            self.api_key,
            self.organization_id,
            end_user_id,
            self.timeout,
            self.cache,
        )

    # -- building ---------------------------------------------------------------------------

    def query(self, *, acting: bool = True, **extra: QueryValue | None) -> Query:
        """The organization, and on the routes that act for the caller the end user (SPEC §8),
        then ``extra`` less its None values."""
        query: Query = []
        if self.organization_id:
            query.append(("organization_id", self.organization_id))
        if acting and self.end_user_id is not None:
            query.append(("end_user_id", self.end_user_id))
        query.extend((name, value) for name, value in extra.items() if value is not None)
        return query

    def request(
        self,
        method: str,
        path: str,
        query: Query | None,
        *,
        json: Any = None,
        timeout: float | None = None,
        headers: Mapping[str, str] | None = None,
        **body: Any,
    ) -> httpx.Request:
        """A request to the API. ``query`` None: the one written in ``path``. ``headers`` (the
        proxy's, for the provider as the caller wrote them, even none) replace the JSON
        ``Accept`` of the service's own routes."""
        return self.build(
            method,
            self.root + path,
            params=query,
            json=json,
            headers={"X-API-Key": self.api_key, **(JSON_ACCEPT if headers is None else headers)},
            timeout=self.timeout if timeout is None else timeout,
            **body,
        )

    def paged(self, path: str, query: Query, of: Callable[[dict[str, Any]], T]) -> Call[Page[T]]:
        """A list call that follows the ``Link: <…>; rel="next"`` header: the next page is the
        same path with that link's query (its cursor), sent to this client's base URL."""

        def parse(response: httpx.Response) -> Page[T]:
            items = [of(item) for item in answer(response)]
            link = response.links.get("next", {}).get("url")
            if not link:
                return Page(items, None)
            following: Query = list(parse_qsl(urlsplit(link).query, keep_blank_values=True))
            return Page(items, self.paged(path, following, of))

        return Call(self.request("GET", path, query), parse)

    # -- connections ------------------------------------------------------------------------

    def list_connections(self, filters: ConnectionFilters) -> Call[Page[Connection]]:
        query = self.query(
            app_key=filters.get("app_key"),
            status=filters.get("status"),
            limit=filters.get("page_size"),
            forceCheck="true" if filters.get("force_check") else None,
        )
        tags = filters.get("tags") or {}
        query.extend(("tag", f"{key}:{value}") for key, value in tags.items())
        return self.paged("/", query, Connection.of)

    def get_connection(self, connection_id: str) -> Call[Connection]:
        request = self.request("GET", f"/{segment(connection_id)}", self.query())
        return Call(request, lambda response: Connection.of(answer(response)))

    def update_connection(
        self,
        connection_id: str,
        tags: Mapping[str, str | None] | None,
        metadata: Mapping[str, Any] | None,
    ) -> Call[Connection]:
        body: dict[str, Any] = {}
        if tags is not None:
            body["tags"] = dict(tags)
        if metadata is not None:
            body["metadata"] = dict(metadata)
        request = self.request("PATCH", f"/{segment(connection_id)}", self.query(), json=body)
        return Call(request, lambda response: Connection.of(answer(response)))

    def set_active(self, connection_id: str, is_active: bool) -> Call[None]:
        def parse(response: httpx.Response) -> None:
            answer(response)
            self.cache.drop(connection_id)

        path = f"/connections/{segment(connection_id)}/active"
        request = self.request("PATCH", path, self.query(), json={"is_active": is_active})
        return Call(request, parse)

    def delete_connection(self, connection_id: str) -> Call[None]:
        def parse(response: httpx.Response) -> None:
            self.cache.drop(connection_id)
            nothing(response)

        return Call(self.request("DELETE", f"/{segment(connection_id)}", self.query()), parse)

    def test_connection(self, connection_id: str) -> Call[TestResult]:
        request = self.request("POST", f"/{segment(connection_id)}/test", self.query())
        return Call(request, lambda response: TestResult.of(answer(response)))

    def health(self, connection_id: str) -> Call[Health]:
        request = self.request("GET", f"/{segment(connection_id)}/health", self.query())
        return Call(request, lambda response: Health.of(answer(response)))

    # -- tokens -----------------------------------------------------------------------------

    def token_key(self, connection_id: str) -> TokenKey:
        return (connection_id, self.end_user_id)

    def flight_key(self, connection_id: str, required: tuple[str, ...], force: bool) -> FlightKey:
        return (connection_id, self.end_user_id, required, force)

    def cached_token(self, connection_id: str, required: tuple[str, ...]) -> Token | None:
        return self.cache.get(self.token_key(connection_id), required)

    def token(self, connection_id: str, required: tuple[str, ...], force: bool) -> Call[Token]:
        """``POST /{id}/token``; its answer is cached, and a refusal forgets what was (for this
        end user: another's refusal says nothing about this one's token)."""
        key = self.token_key(connection_id)

        def parse(response: httpx.Response) -> Token:
            if not response.is_success:
                self.cache.forget(key)
                raise ConnectorsError.from_response(response)
            token = Token.of(response.json())
            self.cache.put(key, token)
            return token

        query = self.query(
            required_scopes=" ".join(required) or None,
            force_refresh="true" if force else None,
        )
        return Call(self.request("POST", f"/{segment(connection_id)}/token", query), parse)

    # -- flows ------------------------------------------------------------------------------

    def authorize(self, body: dict[str, Any]) -> Call[Authorization]:
        request = self.request("POST", "/authorize", self.query(), json=body)
        return Call(request, lambda response: Authorization.of(answer(response)))

    def complete(
        self, state_token: str, wait: int | None, verifier: str | None
    ) -> Call[Completion]:
        body = {"state_token": state_token}
        if verifier is not None:
            body["verifier"] = verifier
        # The service holds the answer up to ``wait`` seconds: the read may take that long.
        timeout = self.timeout + (wait or 0)
        query = self.query(wait=wait)
        request = self.request("POST", "/complete-oauth", query, json=body, timeout=timeout)
        return Call(request, lambda response: Completion.of(answer(response)))

    # -- end users (organization routes: no end_user_id in the query) ---------------------

    def put_end_user(
        self,
        end_user_id: str,
        email: str | None,
        display_name: str | None,
        tags: Mapping[str, str] | None,
    ) -> Call[EndUser]:
        body = {
            name: value
            for name, value in (("email", email), ("display_name", display_name), ("tags", tags))
            if value is not None
        }
        path = f"/end-users/{segment(end_user_id)}"
        request = self.request("PUT", path, self.query(acting=False), json=body)
        return Call(request, lambda response: EndUser.of(answer(response)))

    def get_end_user(self, end_user_id: str) -> Call[EndUser]:
        request = self.request(
            "GET", f"/end-users/{segment(end_user_id)}", self.query(acting=False)
        )
        return Call(request, lambda response: EndUser.of(answer(response)))

    def list_end_users(self, limit: int | None) -> Call[Page[EndUser]]:
        return self.paged("/end-users", self.query(acting=False, limit=limit), EndUser.of)

    def delete_end_user(self, end_user_id: str) -> Call[None]:
        request = self.request(
            "DELETE", f"/end-users/{segment(end_user_id)}", self.query(acting=False)
        )
        return Call(request, nothing)

    # -- proxy ------------------------------------------------------------------------------

    def proxy(
        self,
        connection_id: str,
        method: str,
        path: str,
        *,
        params: Mapping[str, QueryValue] | list[tuple[str, QueryValue]] | None = None,
        headers: Mapping[str, str] | None = None,
        content: bytes | str | None = None,
        data: Mapping[str, Any] | None = None,
        files: Mapping[str, Any] | None = None,
        json: Any = None,
        timeout: float | None = None,
        retries: int | None = None,
    ) -> Call[httpx.Response]:
        """``{method} /{id}/proxy/{path}``: the service adds the credentials and sends it to
        the provider's API; ``path`` is relative to the provider's API base, and a query in it
        is sent before ``params``."""
        route, written = proxy_path(path)
        given = list(params.items()) if isinstance(params, Mapping) else list(params or [])
        # One query string, the written part kept as it is (httpx would replace a URL's own
        # query with any ``params`` it is given, and re-encoding it could change it).
        parts = (
            str(httpx.QueryParams(tuple(self.query()))),
            written,
            str(httpx.QueryParams(tuple(given))),
        )
        query = "&".join(part for part in parts if part)
        sent = dict(headers or {})
        if retries is not None:
            sent[PROXY_RETRIES] = str(retries)
        request = self.request(
            method.upper(),
            f"/{segment(connection_id)}/proxy/{route}" + (f"?{query}" if query else ""),
            None,
            json=json,
            timeout=timeout,
            headers=sent,
            content=content,
            data=data,
            files=files,
        )
        return Call(request, proxied)


class AuthorizeOptions(TypedDict, total=False):
    """The optional fields of ``POST /authorize`` (SPEC §3.1); unset ones keep the service's
    defaults."""

    scopes: list[str] | None
    integration_params: Mapping[str, str] | None
    return_url: str | None
    completion: Literal["callback", "explicit"] | None
    connection_id: str | None
    grant: Literal["authorization_code", "device_code"] | None
    require_verifier: bool | None
    # ``custom_mcp`` only (SPEC §11): the MCP server to connect, and the connection's name.
    mcp_server_url: str | None
    display_name: str | None


def authorize_body(connector_type: str, options: AuthorizeOptions) -> dict[str, Any]:
    body: dict[str, Any] = {"connector_type": connector_type}
    for name, value in options.items():
        if value is not None:
            body[name] = dict(value) if isinstance(value, Mapping) else value
    return body
