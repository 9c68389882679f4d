"""One short MCP session with a server, on the official SDK's client (Streamable HTTP).

``run_session`` opens the session with the connection's token, runs the handshake, hands the
session to a piece of work, and closes it; what went wrong comes back as one of the errors
below, never as a framework's exception group. The token goes only into the
``Authorization`` header of the requests to the server, never into an error or a log line.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from importlib.metadata import version
from typing import Any, TypeVar

import httpx
import httpx2
from mcp import ClientSession, MCPError
from mcp.client.streamable_http import streamable_http_client
from mcp.types import (
    CallToolResult,
    Implementation,
    InitializeResult,
    PaginatedRequestParams,
)

from personal_connectors.mcp_servers.outcomes import (
    ServerAnsweredError,
    ServerFailure,
    ServerInfo,
    ServerNotAllowed,
    ServerTimedOut,
    ServerUnreachable,
    SessionWork,
    TokenRefused,
)
from personal_connectors.mcp_servers.transport import SharedClientTransport
from personal_connectors.outbound.guard import DestinationRefused

__all__ = [
    "ServerAnsweredError",
    "ServerFailure",
    "ServerInfo",
    "ServerTimedOut",
    "ServerUnreachable",
    "SessionWork",
    "TokenRefused",
    "call_tool",
    "list_all_tools",
    "run_session",
    "server_info",
]

T = TypeVar("T")

CLIENT_INFO = Implementation(name="personal-connectors", version=version("personal-connectors"))
# A server that pages forever (or repeats a cursor) is cut off here.
MAX_TOOL_PAGES = 100


async def server_info(
    http: httpx.AsyncClient, url: str, headers: dict[str, str] | None = None
) -> ServerInfo:
    """Who the server at ``url`` is (the ``initialize`` handshake), asked with ``headers`` or
    none; a server that wants authorization raises ``TokenRefused`` with its challenge."""

    async def work(opened: SessionWork) -> ServerInfo:
        return opened.server

    return await run_session(http, url, headers or {}, work)


async def run_session(
    http: httpx.AsyncClient,
    url: str,
    headers: dict[str, str],
    work: Callable[[SessionWork], Awaitable[T]],
) -> T:
    """Open a session at ``url`` with ``headers`` (the credentials), run ``work``, close it."""
    transport = SharedClientTransport(http)
    try:
        async with (
            httpx2.AsyncClient(transport=transport, headers=headers) as client,
            streamable_http_client(url, http_client=client) as (read, write),
            ClientSession(read, write, client_info=CLIENT_INFO) as session,
        ):
            started = await session.initialize()
            return await work(SessionWork(session, _server_info(started)))
    except (Exception, BaseExceptionGroup) as exc:
        failure = _classify(exc, transport)
        if failure is None:
            raise
        raise failure from None


def _server_info(started: InitializeResult) -> ServerInfo:
    info = started.server_info
    return ServerInfo(info.name, info.version, started.protocol_version)


def _classify(exc: BaseException, transport: SharedClientTransport) -> ServerFailure | None:
    """The failure ``exc`` stands for; None for what is not the server's doing (cancellation)."""
    if transport.refused_token:
        return TokenRefused(
            "the MCP server refused the connection's token (HTTP 401)", transport.challenge
        )
    leaf = _first_leaf(exc)
    if isinstance(leaf, httpx2.TimeoutException):
        return ServerTimedOut("the MCP server did not answer in time")
    if isinstance(leaf, httpx2.TransportError):
        if isinstance(leaf.__cause__, DestinationRefused):
            return ServerNotAllowed(
                f"the MCP server is not an allowed destination ({leaf.__cause__.reason})"
            )
        cause = type(leaf.__cause__ or leaf).__name__
        return ServerUnreachable(f"the MCP server is unreachable ({cause})")
    if isinstance(leaf, MCPError):
        return ServerAnsweredError(
            f"the MCP server answered an error: {leaf.message[:200]}", leaf.error
        )
    if isinstance(leaf, RuntimeError):  # e.g. a protocol version the SDK does not speak
        return ServerAnsweredError(f"the MCP server's answer is not usable: {str(leaf)[:200]}")
    return None


def _first_leaf(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


async def list_all_tools(session: ClientSession) -> list[dict[str, Any]]:
    """Every page of ``tools/list``, each tool as the server gave it (MCP's JSON names)."""
    tools: list[dict[str, Any]] = []
    cursor: str | None = None
    seen: set[str] = set()
    for _ in range(MAX_TOOL_PAGES):
        params = PaginatedRequestParams(cursor=cursor) if cursor is not None else None
        page = await session.list_tools(params=params)
        tools.extend(
            tool.model_dump(mode="json", by_alias=True, exclude_none=True) for tool in page.tools
        )
        cursor = page.next_cursor
        if cursor is None or cursor in seen:
            return tools
        seen.add(cursor)
    raise ServerAnsweredError(f"the MCP server's tool list runs past {MAX_TOOL_PAGES} pages")


async def call_tool(session: ClientSession, name: str, arguments: dict[str, Any] | None) -> Any:
    """``tools/call``, its result as the server gave it (``isError`` results included)."""
    result = await session.call_tool(name, arguments)
    if not isinstance(result, CallToolResult):  # an extension's result this client did not ask for
        raise ServerAnsweredError("the MCP server answered tools/call with an unexpected result")
    return result
