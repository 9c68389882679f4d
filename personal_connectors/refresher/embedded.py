"""The background refresher inside `serve` (``CONNECTORS_REFRESHER_EMBEDDED``, `serve --refresher`).

Each worker runs one; their claims never overlap (``refresher.repository``), so more workers
only mean more refreshes at a time. It stops with the application, letting refreshes in flight
finish first.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from personal_connectors.refresher.service import BackgroundRefresher
from personal_connectors.runtime import Runtime


@asynccontextmanager
async def embedded_refresher(runtime: Runtime) -> AsyncIterator[None]:
    if not runtime.settings.refresher_embedded:
        yield
        return
    stop = asyncio.Event()
    task = asyncio.create_task(BackgroundRefresher(runtime).run(stop))
    try:
        yield
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await task
