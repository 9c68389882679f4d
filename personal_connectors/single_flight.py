"""In-process single flight: concurrent callers for one key share one execution.

The database lease makes refreshes exclusive across processes; this makes them cheap inside one:
a hundred coroutines asking for the same connection's token wait on one task instead of a
hundred lease polls.

The execution is a task of its own, not part of its first caller: a caller that stops waiting
(its wait budget ran out, its client went away) leaves it running, so a request already sent to
a provider is never abandoned and its answer is still stored. ``drain`` waits for the tasks at
shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class SingleFlight(Generic[T]):
    def __init__(self) -> None:
        self._inflight: dict[str, asyncio.Task[T]] = {}

    async def run(
        self, key: str, work: Callable[[], Awaitable[T]], *, wait_seconds: float | None = None
    ) -> T:
        """``work``'s result, started unless one for ``key`` is running; ``TimeoutError`` after
        ``wait_seconds`` of waiting, the execution going on."""
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.ensure_future(work())
            self._inflight[key] = task
            task.add_done_callback(lambda done: self._finished(key, done))
        return await asyncio.wait_for(asyncio.shield(task), wait_seconds)

    def _finished(self, key: str, task: asyncio.Task[T]) -> None:
        if self._inflight.get(key) is task:
            del self._inflight[key]
        if not task.cancelled():
            task.exception()  # retrieved: its callers may all have stopped waiting

    async def drain(self, seconds: float) -> None:
        """Wait up to ``seconds`` for the executions in flight, then cancel what is left."""
        running = list(self._inflight.values())
        if not running:
            return
        _, late = await asyncio.wait(running, timeout=seconds)
        for task in late:
            task.cancel()
        if late:
            with contextlib.suppress(Exception):
                await asyncio.wait(late)
