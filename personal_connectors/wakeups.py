"""Wake-ups by key for requests that wait for a change (``complete-oauth?wait=N``).

A change made in this process wakes its waiters at once (``notify``). A change made by another
process (another worker or instance on the same database) is found by one shared poll per
process: while anyone waits, every ``interval`` seconds ``poll`` is asked which of the watched
keys changed — one query for all waiters, however many there are — and those are woken.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Iterator

logger = logging.getLogger(__name__)

# Which of the watched keys changed (one database read for them all).
Poll = Callable[[list[str]], Awaitable[Iterable[str]]]


class Wakeups:
    """One per kind of key (the runtime's ``flow_wakeups``: flow ids)."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._waiting: dict[str, set[asyncio.Event]] = {}
        self._poller: asyncio.Task[None] | None = None

    @contextlib.contextmanager
    def watch(self, key: str, poll: Poll) -> Iterator[asyncio.Event]:
        """An event set whenever ``key`` may have changed, while the block runs. Clear it
        before reading the state it signals: a change after the read then still wakes.
        ``poll``: how other processes' changes are found (the same for every key)."""
        event = asyncio.Event()
        self._waiting.setdefault(key, set()).add(event)
        if self._poller is None or self._poller.done():
            self._poller = asyncio.create_task(self._run(poll), name="wakeups poll")
        try:
            yield event
        finally:
            events = self._waiting.get(key)
            if events is not None:
                events.discard(event)
                if not events:
                    del self._waiting[key]

    def notify(self, key: str) -> None:
        for event in self._waiting.get(key, ()):
            event.set()

    async def _run(self, poll: Poll) -> None:
        """The shared poll: runs while anyone waits, ends with the last waiter."""
        while self._waiting:
            await asyncio.sleep(self.interval)
            keys = list(self._waiting)
            if not keys:
                break
            try:
                changed = await poll(keys)
            except Exception:  # the database hiccuped: waiters still time out; try next tick
                logger.warning("wake-up poll failed", exc_info=True)
                continue
            for key in changed:
                self.notify(key)

    async def close(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
