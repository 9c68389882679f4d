"""The in-process counts of the rate limits' fixed windows: a `limits` asyncio storage (its
documented extension point, ``limits.aio.storage.Storage``) for when no Redis is configured.

`limits`' own ``async+memory`` storage starts a task after each increment that walks every key
it holds to drop the expired ones: with a bucket per (service key, end user), thousands of keys
live at once and that walk cost milliseconds per request. Here a window that ended is noticed by
the next request to its key, and the expired keys are dropped by one walk at most every
``SWEEP_SECONDS``, when a window opens. Nothing awaits inside an operation, so each is atomic on
the event loop.
"""

from __future__ import annotations

import time

from limits.aio.storage import Storage

# The longest expired keys are kept before a walk drops them (memory only; never counted).
SWEEP_SECONDS = 10.0


class WindowCounters(Storage):
    STORAGE_SCHEME = None  # built directly, not from a URI

    def __init__(self) -> None:
        super().__init__()
        self._counts: dict[str, int] = {}
        self._ends: dict[str, float] = {}  # time.time() at which each key's window ends
        self._next_sweep = 0.0

    @property
    def base_exceptions(self) -> type[Exception] | tuple[type[Exception], ...]:
        return ValueError

    async def incr(self, key: str, expiry: float, amount: int = 1) -> int:
        return self.hit(key, expiry, amount)[0]

    def hit(self, key: str, expiry: float, amount: int = 1) -> tuple[int, float]:
        """``incr`` and ``get_expiry`` in one synchronous call: the count after this increment
        and when its window ends (``time.time()``). The limiter's path for this storage."""
        now = time.time()
        end = self._ends.get(key, 0.0)
        if end <= now:  # no window, or it ended: this opens one
            if now >= self._next_sweep:
                self._sweep(now)
            end = self._ends[key] = now + expiry
            self._counts[key] = amount
            return amount, end
        count = self._counts[key] = self._counts[key] + amount
        return count, end

    async def get(self, key: str) -> int:
        if self._ends.get(key, 0.0) <= time.time():
            return 0
        return self._counts[key]

    async def get_expiry(self, key: str) -> float:
        return self._ends.get(key, time.time())

    async def check(self) -> bool:
        return True

    async def reset(self) -> int | None:
        held = len(self._counts)
        self._counts.clear()
        self._ends.clear()
        return held

    async def clear(self, key: str) -> None:
        self._counts.pop(key, None)
        self._ends.pop(key, None)

    def _sweep(self, now: float) -> None:
        self._next_sweep = now + SWEEP_SECONDS
        for key in [key for key, end in self._ends.items() if end <= now]:
            del self._ends[key]
            del self._counts[key]
