"""When each API key was last used (``api_keys.last_used_at``, SPEC §8), stamped off the hot path.

A use is noted in memory; a key noted in this process within ``INTERVAL_SECONDS`` is not noted
again (``StampedCache``, bounded), so a busy key costs one write a minute per process, never one
per request. One background task per process (the app's lifespan runs it beside the token
audit) writes what was noted as soon as it is, all of it in one statement. A stamp never moves
back (another process may have written a later one). A process that dies loses only its
unwritten notes: the stamp is then at most about a minute old.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from personal_connectors.events.repository import KeyUseRepository
from personal_connectors.models import utcnow
from personal_connectors.stamped_cache import StampedCache

logger = logging.getLogger(__name__)

INTERVAL_SECONDS = 60.0
SHUTDOWN_SECONDS = 5.0
RETRY_SECONDS = 1.0


class KeyUse:
    def __init__(self, interval_seconds: float = INTERVAL_SECONDS) -> None:
        self.interval_seconds = interval_seconds
        self._noted: StampedCache[bool] = StampedCache()
        self._pending: dict[str, datetime] = {}
        self._wake = asyncio.Event()
        self._stopping = False

    def record(self, api_key_id: str) -> None:
        """Note that the key was used now (at most once an interval per key); never waits."""
        if self._noted.get(api_key_id, None):
            return
        self._noted.put(api_key_id, None, True, self.interval_seconds)
        self._pending[api_key_id] = utcnow()
        self._wake.set()

    async def flush(self, sessions: async_sessionmaker[AsyncSession]) -> int:
        """Write every noted use; returns how many keys were stamped. On a database error the
        notes are kept for the next attempt (the error logged by type only)."""
        batch, self._pending = self._pending, {}
        if not batch:
            return 0
        try:
            async with sessions() as session:
                await KeyUseRepository(session).stamp(batch)
                await session.commit()
        except asyncio.CancelledError:
            self._put_back(batch)
            raise
        except Exception as exc:
            self._put_back(batch)
            logger.warning(
                "could not stamp %d API keys' last use (%s)", len(batch), type(exc).__name__
            )
            return 0
        return len(batch)

    def _put_back(self, batch: dict[str, datetime]) -> None:
        for key_id, at in batch.items():
            self._pending[key_id] = max(at, self._pending.get(key_id, at))

    async def _write_until_stopped(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        while not self._stopping:
            await self._wake.wait()
            self._wake.clear()
            if self._pending and await self.flush(sessions) == 0 and self._pending:
                await asyncio.sleep(RETRY_SECONDS)  # the database refused: try again later
                self._wake.set()

    @asynccontextmanager
    async def running(self, sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[None]:
        """Stamp noted uses in the background while the block runs; flush them at its end."""
        self._stopping = False
        self._wake = asyncio.Event()  # bound to the running loop
        writer = asyncio.create_task(self._write_until_stopped(sessions), name="key-use")
        try:
            yield
        finally:
            self._stopping = True
            self._wake.set()
            with suppress(Exception):
                await asyncio.wait_for(writer, SHUTDOWN_SECONDS)
            if self._pending:
                with suppress(Exception):
                    await asyncio.wait_for(self.flush(sessions), SHUTDOWN_SECONDS)
