"""The service as an MCP server (SPEC §11): the tools of the caller's connections, in one place.

``/v1/personal-connectors/mcp`` offers the enabled tools of every active connection of the
caller that has an MCP server, each named ``<prefix>__<tool>``; ``/{id}/mcp`` offers one
connection's, under the server's own names. It is the official SDK's low-level ``Server`` over
Streamable HTTP, stateless: every HTTP request is authenticated by the API before it gets here
(``endpoints``: a refusal there keeps the error envelope), reads the connections afresh
(a disabled connection or tool is gone on the next request) and lists tools from the per-
connection cache. A ``tools/call`` goes to that connection's server with a fresh token, in an
upstream session kept open for that connection and token (``client.SessionPool``), and its
result comes back unchanged; a name the caller may not use is an unknown tool, never a call.

The prefix is the app key, or a custom server's display name as a slug (``prefix_base``); a
connection whose base another of the caller's live connections with an MCP server already holds,
or shares with another offered for the first time with it, gets ``_`` and the first 6 hex digits
of its connection id. It is stored when the connection is first offered and never changes while
the connection lives (SPEC §11). A server that cannot be
listed drops out of ``tools/list`` (logged with the connection id and the reason).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

from mcp import MCPError
from mcp.server.lowlevel import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.types import (
    INVALID_PARAMS,
    CallToolRequestParams,
    CallToolResult,
    ListToolsResult,
    PaginatedRequestParams,
    Tool,
)
from starlette.types import Receive, Scope, Send

from personal_connectors.exceptions import APIError
from personal_connectors.mcp_servers.calls import CALL_STATE_KEY, GatewayCall
from personal_connectors.mcp_servers.client import SessionPool
from personal_connectors.mcp_servers.outcomes import ServerAnsweredError
from personal_connectors.mcp_servers.repository import McpRepository, live_records
from personal_connectors.mcp_servers.service import (
    McpService,
    ToolListing,
    cached_tools,
    prefix_base,
    server_url,
    tool_enabled,
)
from personal_connectors.models import Connection, ConnectionStatus
from personal_connectors.runtime import Runtime
from personal_connectors.tokens.records import ConnectionLike

logger = logging.getLogger(__name__)

SERVER_NAME = "personal-connectors"
SEPARATOR = "__"
SUFFIX_HEX_DIGITS = 6
SESSIONS_CLOSE_SECONDS = 3.0  # how long shutdown lets kept upstream sessions say goodbye


@dataclass(frozen=True)
class ExposedTool:
    name: str
    connection: ConnectionLike  # as read for this request
    upstream_name: str
    definition: dict[str, Any]


def prefixes(
    connections: Sequence[ConnectionLike], kept: Mapping[str, str] | None = None
) -> tuple[dict[str, str], dict[str, str]]:
    """Each connection's tool-name prefix by connection id (see the module doc), and those of
    them chosen now, to be stored. ``connections``: the caller's live ones, oldest first;
    ``kept``: prefixes stored since they were read, by connection id."""
    named: dict[str, str] = {}
    for connection in connections:
        stored = connection.mcp_prefix or (kept or {}).get(connection.id)
        if stored is not None:
            named[connection.id] = stored
    taken = set(named.values())
    # Offered for the first time together (or kept from before prefixes were stored, when
    # sharing always meant a suffix for each): those sharing a base all get the suffix.
    fresh = Counter(prefix_base(c) for c in connections if c.id not in named)
    chosen: dict[str, str] = {}
    for connection in connections:
        if connection.id not in named:
            base = prefix_base(connection)
            shared = base in taken or fresh[base] > 1
            prefix = _suffixed(base, connection.id) if shared else base
            named[connection.id] = chosen[connection.id] = prefix
            taken.add(prefix)
    if len(taken) < len(named):  # two stored alike (rows written by a racing request): told apart
        seen: set[str] = set()
        for connection in connections:
            prefix = named[connection.id]
            if prefix in seen:
                named[connection.id] = _suffixed(prefix, connection.id)
            seen.add(prefix)
    return named, chosen


async def _kept_prefixes(runtime: Runtime, connections: Sequence[ConnectionLike]) -> dict[str, str]:
    """``prefixes``, with those chosen now stored (another request's, if it stored first)."""
    named, chosen = prefixes(connections)
    if chosen:
        async with runtime.sessions() as session:
            kept = await McpRepository(session).keep_prefixes(chosen)
        named, _ = prefixes(connections, kept)
    return named


def _suffixed(base: str, connection_id: str) -> str:
    return f"{base}_{connection_id.removeprefix('conn_')[:SUFFIX_HEX_DIGITS]}"


class McpGateway:
    """The server and its Streamable HTTP session manager, for one application."""

    def __init__(self) -> None:
        self.sessions = SessionPool()
        sessions = self.sessions

        async def call_tool(ctx: Any, params: CallToolRequestParams) -> CallToolResult:
            return await _call_tool(ctx, params, sessions)

        self.server: Server[Any] = Server(
            SERVER_NAME,
            version=version("personal-connectors"),
            on_list_tools=_list_tools,
            on_call_tool=call_tool,
        )
        self.manager = StreamableHTTPSessionManager(
            app=self.server, json_response=True, stateless=True
        )

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """For the application's lifespan: the manager's task group, and the upstream
        sessions kept for ``tools/call`` (closed at the end)."""
        async with self.manager.run():
            try:
                yield
            finally:
                await self.sessions.aclose(SESSIONS_CLOSE_SECONDS)

    async def handle(self, scope: Scope, receive: Receive, send: Send, call: GatewayCall) -> None:
        state = scope.setdefault("state", {})
        state[CALL_STATE_KEY] = call
        await self.manager.handle_request(scope, receive, send)


def _call_of(ctx: Any) -> GatewayCall:
    call = getattr(ctx.request.state, CALL_STATE_KEY, None) if ctx.request is not None else None
    if not isinstance(call, GatewayCall):  # only the API's routes hand requests to the manager
        raise MCPError(code=INVALID_PARAMS, message="No caller.")
    return call


async def _list_tools(ctx: Any, params: PaginatedRequestParams | None) -> ListToolsResult:
    exposed = await _exposed(_call_of(ctx))
    return ListToolsResult(
        tools=[Tool.model_validate({**tool.definition, "name": tool.name}) for tool in exposed]
    )


async def _call_tool(
    ctx: Any, params: CallToolRequestParams, sessions: SessionPool
) -> CallToolResult:
    call = _call_of(ctx)
    exposed = await _exposed(call, wanted=params.name)
    match = next((tool for tool in exposed if tool.name == params.name), None)
    if match is None:
        raise MCPError(code=INVALID_PARAMS, message=f"Unknown tool: {params.name}")
    # The row as this request read it; the session is for a refresh on the way (none: no query).
    async with call.runtime.sessions() as session:
        try:
            return await McpService(session, call.runtime).call_tool(
                match.connection, match.upstream_name, params.arguments, sessions
            )
        except ServerAnsweredError as exc:  # the server's own JSON-RPC error, passed on
            assert exc.error is not None
            raise MCPError.from_error_data(exc.error) from None


async def _exposed(call: GatewayCall, wanted: str | None = None) -> list[ExposedTool]:
    """The tools the caller may use now; with ``wanted``, only the servers it could be at."""
    with_server: Sequence[ConnectionLike]
    if call.connection is not None:  # `/{id}/mcp`: under the server's own names
        with_server = [call.connection]
        named = {call.connection.id: ""}
    else:
        connections = await live_records(
            call.runtime.sessions,
            call.runtime.hot_reader,
            call.access.user_id,
            call.access.organization_id,
        )
        with_server = [c for c in connections if server_url(call.runtime, c) is not None]
        named = await _kept_prefixes(call.runtime, with_server)
    usable = [
        c
        for c in with_server
        if c.id in named
        and c.is_active
        and c.tools_enabled
        and c.status == ConnectionStatus.ACTIVE
        and (wanted is None or _could_be(wanted, named[c.id]))
    ]
    # The cached lists first, checked against the rows just read; the rest side by side.
    listings: dict[str, ToolListing | BaseException] = {}
    missing: list[ConnectionLike] = []
    for connection in usable:
        kept = cached_tools(call.runtime, connection)
        if kept is None:
            missing.append(connection)
        else:
            listings[connection.id] = kept
    fetched = await asyncio.gather(
        *(_listing(call.runtime, c.id) for c in missing), return_exceptions=True
    )
    listings.update(zip((c.id for c in missing), fetched, strict=True))
    exposed: list[ExposedTool] = []
    for connection in usable:
        listing = listings[connection.id]
        if isinstance(listing, BaseException):
            if not isinstance(listing, Exception):
                raise listing
            reason = listing.code if isinstance(listing, APIError) else type(listing).__name__
            logger.warning("MCP server of %s left out of tools/list: %s", connection.id, reason)
            continue
        prefix = named[connection.id]
        for tool in listing.tools:
            upstream = str(tool["name"])
            if tool_enabled(connection, upstream):
                name = f"{prefix}{SEPARATOR}{upstream}" if prefix else upstream
                exposed.append(ExposedTool(name, connection, upstream, tool))
    return exposed


def _could_be(name: str, prefix: str) -> bool:
    return not prefix or name.startswith(prefix + SEPARATOR)


async def _listing(runtime: Runtime, connection_id: str) -> ToolListing:
    """One connection's tools, in a session of its own (the listings run side by side)."""
    async with runtime.sessions() as session:
        connection = await session.get(Connection, connection_id)
        if connection is None:
            raise LookupError(connection_id)
        return await McpService(session, runtime).tools(connection)
