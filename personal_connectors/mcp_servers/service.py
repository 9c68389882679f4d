"""A connection's MCP server (SPEC §11): its tool list, cached, and a health probe.

The server's URL is the catalog entry's ``mcp.url``, or a custom server's own
(``server_url``: the one place that says where a connection's server is).
Every session carries the connection's credentials as the entry's ``api_auth`` says (by default
a fresh access token as a bearer token: the proxy's rule, ``tokens.values``); a server that
answers 401 gets one forced refresh and one retry.

The tool list is kept per connection, in each process, for ``mcp_tools_ttl_seconds`` under a
stamp of the connection's row: its token version (a reconnect, new credentials, a refresh),
whether it is active, and its tool settings (``PATCH /{id}/tools``). A change to any of them,
by any worker, drops the list on the next read; the connections service also drops it at once
on a toggle and a ``PATCH /{id}/tools`` in its own process (a toggle off and on again leaves
the stamp as it was).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from personal_connectors.exceptions import APIError
from personal_connectors.mcp_servers.exceptions import (
    McpServerError,
    McpServerTimeout,
    McpServerUnavailable,
    NoMcpServer,
    NoTokenForMcp,
)
from personal_connectors.mcp_servers.outcomes import (
    ServerAnsweredError,
    ServerFailure,
    ServerTimedOut,
    SessionWork,
    TokenRefused,
)
from personal_connectors.models import NO_AUTH_MODE, OAUTH2_MODE, Connection, utcnow
from personal_connectors.providers.api_auth import MissingCredentialValue, apply_api_auth
from personal_connectors.providers.schema import ApiAuth
from personal_connectors.runtime import Runtime
from personal_connectors.telemetry.metrics import record_mcp_call
from personal_connectors.tokens.exceptions import ConnectionDisabled
from personal_connectors.tokens.records import ConnectionLike
from personal_connectors.tokens.repository import TokenRepository
from personal_connectors.tokens.values import credential_values

if TYPE_CHECKING:
    from mcp.types import CallToolResult

    from personal_connectors.mcp_servers.client import SessionPool

T = TypeVar("T")

# A custom MCP server that needs no authorization is called with nothing added.
NO_CREDENTIALS = ApiAuth.model_construct()  # (an entry must declare something; this is none)
_NOT_SLUG = re.compile(r"[^a-z0-9]+")
MAX_SLUG_LENGTH = 40


@dataclass(frozen=True)
class ToolListing:
    """What a server said in one session: who it is, and its tools as it gave them."""

    server_name: str
    server_version: str
    tools: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class Probe:
    """``POST /{id}/test`` on an MCP connection: the outcome, safe to show."""

    healthy: bool
    message: str
    server_url: str
    response_time_ms: int | None
    server_version: str | None
    available_tools: int | None
    tested_at: datetime


def server_url(runtime: Runtime, connection: ConnectionLike) -> str | None:
    """Where the connection's MCP server is; None when it has none."""
    if connection.mcp_server_url is not None:  # a custom MCP server (SPEC §11)
        return connection.mcp_server_url
    entry = runtime.catalog.get(connection.app_key)
    if entry is None or entry.mcp is None:
        return None
    return entry.mcp.url


def prefix_base(connection: ConnectionLike) -> str:
    """The gateway's tool-name prefix of a connection before any sharing suffix: the app key,
    or for a custom MCP server a slug of its display name (lower-case letters, digits and
    ``-``, so it never holds the ``__`` separator)."""
    if connection.mcp_server_url is None:
        return connection.app_key
    slug = _NOT_SLUG.sub("-", (connection.display_name or "").lower()).strip("-")
    return slug[:MAX_SLUG_LENGTH].strip("-") or "mcp"


def tool_enabled(connection: ConnectionLike, name: str) -> bool:
    """Whether the platform may use the tool (the connection's ``PATCH /{id}/tools`` settings)."""
    if not connection.tools_enabled:
        return False
    return connection.allowed_tools is None or name in connection.allowed_tools


def _stamp(connection: ConnectionLike) -> Hashable:
    return (
        connection.version,
        connection.is_active,
        connection.tools_enabled,
        tuple(connection.allowed_tools) if connection.allowed_tools is not None else None,
    )


def cached_tools(runtime: Runtime, connection: ConnectionLike) -> ToolListing | None:
    """The connection's tool list if this process holds it for the row as read, else None."""
    if not connection.is_active or server_url(runtime, connection) is None:
        return None
    kept: ToolListing | None = runtime.mcp_tools.get(connection.id, _stamp(connection))
    return kept


class McpService:
    def __init__(self, session: AsyncSession, runtime: Runtime) -> None:
        self.session = session
        self.runtime = runtime

    async def tools(self, connection: Connection, *, force_refresh: bool = False) -> ToolListing:
        """The server's tools, from the cache unless it is stale or ``force_refresh``."""
        url = server_url(self.runtime, connection)
        if url is None:
            raise NoMcpServer(connection.app_key)
        if not connection.is_active:
            raise ConnectionDisabled("The connection is disabled; enable it to use its tools.")
        cache = self.runtime.mcp_tools
        if not force_refresh:
            kept: ToolListing | None = cache.get(connection.id, _stamp(connection))
            if kept is not None:
                return kept
        stamp = _stamp(connection)  # as read before any refresh on the way changes the row
        try:
            listing = await self._fetch(connection, url)
        except ServerFailure as exc:
            failure = _api_error(exc)
            await self._record(connection, False, failure.system_message)
            raise failure from None
        await self._record(connection, True, None)
        cache.put(connection.id, stamp, listing, self.runtime.settings.mcp_tools_ttl_seconds)
        return listing

    async def _record(self, connection: Connection, success: bool, message: str | None) -> None:
        """The server's answer is the connection's health (``GET /{id}/health``). Commits.

        Read again first: a refresh on the way commits in the token service's own sessions.
        """
        await self.session.refresh(connection)
        connection.record_check(utcnow(), success, message)
        await self.session.commit()

    async def probe(self, connection: Connection) -> Probe:
        """A fresh session and tool list (cached for ``tools``), or why there is none."""
        url = server_url(self.runtime, connection)
        if url is None:
            raise NoMcpServer(connection.app_key)
        started = time.perf_counter()
        try:
            listing = await self.tools(connection, force_refresh=True)
        except APIError as exc:  # the server, or the token service, said no
            return Probe(False, exc.system_message, url, _since(started), None, None, utcnow())
        return Probe(
            True,
            "Connection successful. MCP server is responding correctly.",
            url,
            _since(started),
            listing.server_version,
            len(listing.tools),
            utcnow(),
        )

    async def call_tool(
        self,
        connection: ConnectionLike,
        name: str,
        arguments: dict[str, Any] | None,
        sessions: SessionPool | None = None,
    ) -> CallToolResult:
        """``tools/call`` at the connection's server with a fresh token (the gateway).

        The server's result comes back as it gave it; a JSON-RPC error from the server is
        raised as ``ServerAnsweredError`` with its ``error``; a server that cannot be used is
        an ``isError`` result saying why (the caller's model reads it, not an HTTP status).
        ``sessions``: the gateway's kept sessions, else a session of its own for this call.
        """
        url = server_url(self.runtime, connection)
        if url is None:
            raise NoMcpServer(connection.app_key)
        if connection.auth_mode != OAUTH2_MODE:  # its credentials are fields of the row
            row = await TokenRepository.row_of(self.session, connection)
            if row is None:  # deleted since the request read it
                return _error_result(f"{connection.app_key}: the connection was deleted.")
            connection = row
        limit = self.runtime.settings.mcp_call_timeout_seconds

        async def work(opened: SessionWork) -> CallToolResult:
            from personal_connectors.mcp_servers.client import call_tool as send_call

            result: CallToolResult = await send_call(opened.session, name, arguments)
            return result

        try:
            return await self._with_token(connection, url, work, limit=limit, sessions=sessions)
        except ServerAnsweredError as exc:
            if exc.error is not None:
                raise
            return _error_result(f"{connection.app_key}: {exc}")
        except ServerFailure as exc:
            return _error_result(f"{connection.app_key}: {exc}")
        except APIError as exc:  # no usable token: reconnect, provider down while refreshing …
            return _error_result(f"{connection.app_key}: {exc.system_message}")

    async def _fetch(self, connection: Connection, url: str) -> ToolListing:
        return await self._with_token(connection, url, _list_tools)

    async def _with_token(
        self,
        connection: ConnectionLike,
        url: str,
        work: Callable[[SessionWork], Awaitable[T]],
        *,
        limit: float | None = None,
        sessions: SessionPool | None = None,
    ) -> T:
        """``work`` in a session with fresh credentials; after a 401, once more with new ones.

        The credentials go as the entry's ``api_auth`` says (the proxy's rule; by default
        ``Authorization: Bearer <access token>``), in headers or in the URL's query. With
        ``sessions``, in the session kept for these credentials.
        """
        limit = limit or self.runtime.settings.provider_timeout_seconds
        entry = self.runtime.catalog.get(connection.app_key)
        api_auth = entry.api_auth if entry is not None else None
        if connection.auth_mode == NO_AUTH_MODE:
            api_auth = NO_CREDENTIALS
        for force in (False, True):
            values = await credential_values(
                self.session, self.runtime, connection, force_refresh=force
            )
            try:
                applied = apply_api_auth(api_auth, values)
            except MissingCredentialValue:
                raise NoTokenForMcp() from None
            target = str(httpx.URL(url).copy_merge_params(applied.query)) if applied.query else url
            started, outcome = time.perf_counter(), "ok"
            try:
                async with asyncio.timeout(limit):
                    if sessions is not None:
                        return await sessions.run(
                            self.runtime.http, connection.id, target, applied.headers, work
                        )
                    from personal_connectors.mcp_servers.client import run_session

                    return await run_session(self.runtime.http, target, applied.headers, work)
            except TimeoutError:
                outcome = "timeout"
                raise ServerTimedOut(f"the MCP server did not answer within {limit:g}s") from None
            except TokenRefused:
                outcome = "401"
                if force:
                    raise
            except ServerFailure as exc:
                outcome = type(exc).__name__
                raise
            finally:
                record_mcp_call(connection.app_key, outcome, time.perf_counter() - started)
        raise AssertionError("unreachable")


async def _list_tools(work: SessionWork) -> ToolListing:
    from personal_connectors.mcp_servers.client import list_all_tools

    tools = await list_all_tools(work.session)
    return ToolListing(work.server.name, work.server.version, tuple(tools))


def _api_error(failure: ServerFailure) -> APIError:
    """The API's answer to a server that could not be used for a tool list."""
    if isinstance(failure, ServerTimedOut):
        return McpServerTimeout(str(failure))
    if isinstance(failure, ServerAnsweredError):
        return McpServerError(str(failure))
    if isinstance(failure, TokenRefused):
        return McpServerError(
            f"{failure} even after a refresh; reconnect the account if it persists."
        )
    return McpServerUnavailable(str(failure))


def _error_result(message: str) -> CallToolResult:
    from mcp.types import CallToolResult, TextContent

    return CallToolResult(content=[TextContent(text=message)], is_error=True)


def _since(started: float) -> int:
    return round((time.perf_counter() - started) * 1000)
