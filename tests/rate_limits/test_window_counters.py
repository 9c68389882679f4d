"""The in-process counts (rate_limits/memory.py): a window counts from its first request, a key
whose window ended starts a new one, and ended windows are dropped so memory stays bounded by
the callers of the last period."""

from __future__ import annotations

import asyncio
import time

from personal_connectors.rate_limits import memory
from personal_connectors.rate_limits.memory import WindowCounters


def test_a_window_counts_then_a_new_one_opens_after_it_ends() -> None:
    async def scenario() -> None:
        counters = WindowCounters()
        assert [await counters.incr("a", 0.2) for _ in range(3)] == [1, 2, 3]
        assert await counters.get("a") == 3
        assert 0 < await counters.get_expiry("a") - time.time() <= 0.2
        assert await counters.incr("b", 0.2) == 1  # another key: its own count
        while await counters.get("a"):
            await asyncio.sleep(0.02)
        assert await counters.incr("a", 0.2) == 1
        await counters.clear("a")
        assert await counters.get("a") == 0

    asyncio.run(scenario())


def test_ended_windows_are_dropped_when_a_window_opens(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(memory, "SWEEP_SECONDS", 0.0)

    async def scenario() -> int | None:
        counters = WindowCounters()
        for n in range(1000):
            await counters.incr(f"caller-{n}", 0.05)
        await asyncio.sleep(0.1)
        await counters.incr("latecomer", 60)
        return await counters.reset()  # how many keys it held

    assert asyncio.run(scenario()) == 1
