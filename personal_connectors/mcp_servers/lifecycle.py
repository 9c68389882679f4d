"""The MCP gateway's life in the application: started on the first request that needs it.

Importing the MCP SDK costs about half a second of CPU, which a service that never serves MCP
should not pay at start-up (``/readyz``); the SDK's session manager, once made, runs in a task of
the application's lifespan until shutdown.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from personal_connectors.mcp_servers.gateway import McpGateway

STOP_SECONDS = 5.0  # how long shutdown waits for the session manager to close


class GatewayHolder:
    """The application's gateway: ``running`` for the lifespan, ``gateway`` for a request."""

    def __init__(self) -> None:
        self._wanted: asyncio.Event | None = None
        self._stopping: asyncio.Event | None = None
        self._ready: asyncio.Future[McpGateway] | None = None

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        self._wanted, self._stopping = asyncio.Event(), asyncio.Event()
        self._ready = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(self._serve(), name="mcp-gateway")
        try:
            yield
        finally:
            self._stopping.set()
            with suppress(TimeoutError):
                await asyncio.wait_for(task, STOP_SECONDS)

    async def gateway(self) -> McpGateway:
        """The running gateway, started now if this is the first request that needs it."""
        if self._wanted is None or self._ready is None:
            raise RuntimeError("the MCP gateway runs only inside the application's lifespan")
        self._wanted.set()
        return await asyncio.shield(self._ready)

    async def _serve(self) -> None:
        assert self._wanted is not None and self._stopping is not None and self._ready
        wanted = asyncio.create_task(self._wanted.wait())
        stopping = asyncio.create_task(self._stopping.wait())
        await asyncio.wait({wanted, stopping}, return_when=asyncio.FIRST_COMPLETED)
        wanted.cancel()
        if self._stopping.is_set():
            stopping.cancel()
            return
        try:
            from personal_connectors.mcp_servers.gateway import McpGateway

            gateway = McpGateway()
            async with gateway.running():
                self._ready.set_result(gateway)
                await stopping
        except BaseException as exc:
            if not self._ready.done():
                self._ready.set_exception(exc)
            raise
