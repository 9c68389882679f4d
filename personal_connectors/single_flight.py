"""In-process single flight: concurrent callers for one key share one execution.

The database lease makes refreshes exclusive across processes; this makes them cheap inside one:
a hundred coroutines asking for the same connection's token wait on one future instead of a
hundred lease polls.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class SingleFlight(Generic[T]):
    def __init__(self) -> None:
        self._inflight: dict[str, asyncio.Future[T]] = {}

    async def run(self, key: str, work: Callable[[], Awaitable[T]]) -> T:
        existing = self._inflight.get(key)
        if existing is not None:
            return await asyncio.shield(existing)
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            result = await work()
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: followers may not exist
            raise
        else:
            future.set_result(result)
            return result
        finally:
            del self._inflight[key]
