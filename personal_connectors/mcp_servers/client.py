"""MCP sessions with a server, on the official SDK's client (Streamable HTTP).

``run_session`` opens the session with the connection's token, runs the handshake, hands the
session to a piece of work, and closes it. ``SessionPool`` keeps sessions open between calls
instead (the gateway's ``tools/call``: one request to the server a call, not a handshake, a
tool list and a close as well), one per connection and credentials. Either way what went wrong
comes back as one of the errors below, never as a framework's exception group. The token goes
only into the headers (or query) of the requests to the server, never into an error or a log
line.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import Awaitable, Callable, Hashable
from contextlib import suppress
from importlib.metadata import version
from typing import Any, TypeVar

import httpx2
from mcp import ClientSession, MCPError
from mcp.client.streamable_http import streamable_http_client
from mcp.types import (
    CONNECTION_CLOSED,
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
from personal_connectors.outbound.client import OutboundClient
from personal_connectors.outbound.guard import DestinationRefused

__all__ = [
    "ServerAnsweredError",
    "ServerFailure",
    "ServerInfo",
    "ServerTimedOut",
    "ServerUnreachable",
    "SessionPool",
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
# A kept session unused this long is closed; at most this many are kept per process.
KEPT_IDLE_SECONDS = 60.0
MAX_KEPT_SESSIONS = 256
# How long a call told "connection closed" waits for its session's task to say why.
CLOSING_SECONDS = 1.0


async def server_info(
    http: OutboundClient, url: str, headers: dict[str, str] | None = None
) -> ServerInfo:
    """Who the server at ``url`` is (the ``initialize`` handshake), asked with ``headers`` or
    none; a server that wants authorization raises ``TokenRefused`` with its challenge."""

    async def work(opened: SessionWork) -> ServerInfo:
        return opened.server

    return await run_session(http, url, headers or {}, work)


async def run_session(
    http: OutboundClient,
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
    # Here only when a task group of the SDK's cancelled the block and then swallowed its own
    # cancellation (a failed request, e.g. a 401, ends the session that way): no answer came.
    raise _classify(SessionEnded(), transport) or ServerAnsweredError(
        "the MCP server ended the session before answering"
    )


class SessionEnded(Exception):
    """The SDK's session ended before ``work`` had its answer."""


class _Kept:
    """One session held open by a task of its own (the SDK's contexts live in one task)."""

    def __init__(self, http: OutboundClient, url: str, headers: dict[str, str]) -> None:
        self.transport = SharedClientTransport(http, server_stream=False)
        self.opened: asyncio.Future[SessionWork] = asyncio.get_running_loop().create_future()
        self.failure: BaseException | None = None
        self.in_use = 0
        self.last_used = time.monotonic()
        self._stop = asyncio.Event()
        # A context of its own: not the first caller's (its request id, its trace).
        self.task = asyncio.create_task(
            self._hold(url, headers), name="mcp-kept-session", context=contextvars.Context()
        )

    async def _hold(self, url: str, headers: dict[str, str]) -> None:
        try:
            async with (
                httpx2.AsyncClient(transport=self.transport, headers=headers) as client,
                streamable_http_client(url, http_client=client) as (read, write),
                ClientSession(read, write, client_info=CLIENT_INFO) as session,
            ):
                started = await session.initialize()
                self.opened.set_result(SessionWork(session, _server_info(started)))
                await self._stop.wait()
        except (Exception, BaseExceptionGroup) as exc:
            self.failure = exc
            if not self.opened.done():
                self.opened.set_exception(exc)
                self.opened.exception()  # retrieved: a caller that gave up waiting is no error
        finally:
            self._stop.set()
            if not self.opened.done():
                self.opened.cancel()

    @property
    def usable(self) -> bool:
        return not self._stop.is_set()

    def close(self) -> None:
        self._stop.set()


class SessionPool:
    """Sessions kept open between pieces of work, keyed by connection, URL and credentials.

    New credentials (a refresh) make a new key, so a session never outlives its token's use;
    a session idle for ``KEPT_IDLE_SECONDS``, refused (401), forgotten by the server (404) or
    broken is closed. Made and closed inside one event loop (the gateway's lifespan).
    """

    def __init__(self) -> None:
        self._kept: dict[Hashable, _Kept] = {}
        self._closing: set[asyncio.Task[None]] = set()
        self._swept = time.monotonic()

    async def run(
        self,
        http: OutboundClient,
        key: str,
        url: str,
        headers: dict[str, str],
        work: Callable[[SessionWork], Awaitable[T]],
    ) -> T:
        """``work`` in the kept session for ``key`` at ``url`` with ``headers`` (opened now
        through ``http`` if there is none); a session the server no longer knows is replaced
        once."""
        for attempt in (1, 2):
            kept = self._session(http, key, url, headers)
            kept.in_use += 1
            try:
                opened = await asyncio.shield(kept.opened)
                return await work(opened)
            except (Exception, BaseExceptionGroup) as exc:
                if isinstance(exc, MCPError) and await self._answered(kept, exc):
                    raise ServerAnsweredError(
                        f"the MCP server answered an error: {exc.message[:200]}", exc.error
                    ) from None
                self._drop(kept)
                if kept.transport.session_lost and attempt == 1:
                    continue  # the server did not run it: the request named an unknown session
                failure = _classify(kept.failure or exc, kept.transport)
                if failure is None:
                    raise
                raise failure from None
            finally:
                kept.in_use -= 1
                kept.last_used = time.monotonic()
        raise AssertionError("unreachable")

    @staticmethod
    async def _answered(kept: _Kept, error: MCPError) -> bool:
        """Whether ``error`` is the server's answer, the session still good; not a refused
        token, a forgotten session, or the SDK's word that the session broke (which reaches
        the caller as the session's task unwinds: wait for it briefly to tell)."""
        if kept.transport.refused_token or kept.transport.session_lost:
            return False
        if error.error.code == CONNECTION_CLOSED:
            await asyncio.wait({kept.task}, timeout=CLOSING_SECONDS)
        return kept.usable

    def _session(self, http: OutboundClient, key: str, url: str, headers: dict[str, str]) -> _Kept:
        self._sweep()
        full = (key, url, tuple(sorted(headers.items())))
        kept = self._kept.get(full)
        if kept is None or not kept.usable:
            kept = self._kept[full] = _Kept(http, url, headers)
        return kept

    def _drop(self, kept: _Kept) -> None:
        self._retire(kept)
        for full, held in list(self._kept.items()):
            if held is kept:
                del self._kept[full]

    def _retire(self, kept: _Kept) -> None:
        """Close ``kept``; its task is held until it ends (the loop keeps only weak ones)."""
        kept.close()
        self._closing.add(kept.task)
        kept.task.add_done_callback(self._closing.discard)

    def _sweep(self) -> None:
        """Close idle sessions (at most once a second), and the oldest idle past the cap."""
        now = time.monotonic()
        if now - self._swept < 1.0 and len(self._kept) <= MAX_KEPT_SESSIONS:
            return
        self._swept = now
        idle = sorted(
            (kept.last_used, full) for full, kept in self._kept.items() if kept.in_use == 0
        )
        excess = len(self._kept) - MAX_KEPT_SESSIONS
        for number, (last_used, full) in enumerate(idle):
            kept = self._kept[full]
            if number < excess or now - last_used >= KEPT_IDLE_SECONDS or not kept.usable:
                self._retire(kept)
                del self._kept[full]

    async def aclose(self, within: float) -> None:
        """Close every session (each says goodbye to its server), waiting at most ``within``
        seconds."""
        kept, self._kept = list(self._kept.values()), {}
        for held in kept:
            held.close()
        tasks = [held.task for held in kept] + list(self._closing)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=within)
            for task in pending:
                task.cancel()
            with suppress(Exception):
                await asyncio.gather(*pending, return_exceptions=True)


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
