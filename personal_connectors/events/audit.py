"""The ``connection.token_issued`` audit trail, written in batches off the hot path.

Every token handed out is an audit event, but a row per request would make the busiest endpoint
a writer. The endpoint only appends to an in-memory queue; one background task per process
inserts what accumulated every second (or as soon as ``FLUSH_AT`` are queued) in one
transaction (``EventRepository.insert_many``), with the webhook deliveries owed to endpoints
that opted in to this type. A full queue drops the newest events and counts them rather than
slow the hot path; events queued when the process dies without a graceful shutdown are lost
(about a second's worth). The rows hold identifiers and a flag, never a token.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from personal_connectors.events.outbox import RecordedEvent
from personal_connectors.events.repository import (
    ROWS_PER_STATEMENT,
    EventRepository,
    EventValues,
)
from personal_connectors.events.types import EventType
from personal_connectors.models import new_time_ordered_ids, utcnow

logger = logging.getLogger(__name__)

QUEUE_CAPACITY = 20_000  # several seconds of a single worker's peak token rate
# The queue length that triggers a write before the second is up: large, since SQLite writes
# each index page a transaction touched once at commit, so fewer, larger commits write less.
FLUSH_AT = 5_000
FLUSH_SECONDS = 1.0
SHUTDOWN_SECONDS = 10.0  # how long a graceful shutdown waits for the last write

_TYPE = EventType.TOKEN_ISSUED.value


@dataclass(frozen=True, slots=True)
class IssuedToken:
    connection_id: str
    organization_id: str
    api_key_id: str
    refreshed: bool  # the token was obtained from the provider for this very call
    at: datetime

    @property
    def detail(self) -> dict[str, Any]:
        return {"api_key_id": self.api_key_id, "refreshed": self.refreshed}

    def recorded(self, event_id: str) -> RecordedEvent:
        return RecordedEvent(
            event_id, self.connection_id, self.organization_id, _TYPE, self.detail, self.at
        )


def _rows(batch: list[IssuedToken], ids: list[str]) -> Iterator[EventValues]:
    """The batch's rows for ``EventRepository.insert_many``, made as it takes them."""
    # A detail is one of two per API key: each is serialized once a flush.
    details: dict[tuple[str, bool], str] = {}
    for event, event_id in zip(batch, ids, strict=True):
        detail = details.get((event.api_key_id, event.refreshed))
        if detail is None:
            detail = details[(event.api_key_id, event.refreshed)] = json.dumps(event.detail)
        yield event_id, event.connection_id, event.organization_id, _TYPE, detail, event.at


class TokenAudit:
    """A bounded queue of issued-token events and the task that writes them (one per process).

    ``record`` never waits and never fails; ``running`` (the app's lifespan) writes the queue
    out until the block ends, then flushes what is left.
    """

    def __init__(
        self,
        *,
        capacity: int = QUEUE_CAPACITY,
        batch_size: int = ROWS_PER_STATEMENT,
        flush_at: int = FLUSH_AT,
        flush_seconds: float = FLUSH_SECONDS,
    ) -> None:
        self.capacity = capacity
        self.batch_size = batch_size  # rows a statement
        self.flush_at = flush_at
        self.flush_seconds = flush_seconds
        self.dropped = 0  # since the process started
        self._pending: list[IssuedToken] = []
        self._unreported_drops = 0
        self._wake = asyncio.Event()
        self._stopping = False

    @property
    def pending(self) -> int:
        return len(self._pending)

    def record(
        self, connection_id: str, organization_id: str, api_key_id: str, *, refreshed: bool
    ) -> None:
        """Queue one event; when the queue is full, count it as dropped instead."""
        if len(self._pending) >= self.capacity:
            self.dropped += 1
            self._unreported_drops += 1
            return
        self._pending.append(
            IssuedToken(connection_id, organization_id, api_key_id, refreshed, utcnow())
        )
        if len(self._pending) == self.flush_at:
            self._wake.set()

    async def flush(self, sessions: async_sessionmaker[AsyncSession]) -> int:
        """Write everything queued now; returns how many rows were written.

        On a database error the batch goes back to the front of the queue (as far as there is
        room) for the next attempt, and the error is logged by type only. A batch whose commit
        was under way when the error came (a lost connection, a cancellation) may have been
        stored and is written again: at least once, never silently lost.
        """
        batch, self._pending = self._pending, []
        if not batch:  # (woken only to report drops)
            self._report_drops()
            return 0
        committed = False
        try:
            async with sessions() as session:
                ids = new_time_ordered_ids("evt", len(batch))
                events = EventRepository(session)
                await events.insert_many(
                    len(batch), _rows(batch, ids), rows_per_statement=self.batch_size
                )
                # The deliveries owed to endpoints that opted in to this type.
                await events.enqueue(
                    {event.organization_id for event in batch},
                    (event.recorded(id_) for event, id_ in zip(batch, ids, strict=True)),
                )
                await session.commit()  # one transaction: all of the batch or none of it
                committed = True
        except asyncio.CancelledError:
            if not committed:  # (cancelled closing the session after the commit: written)
                self._put_back(batch)  # (a shutdown that ran out of time: counted, not silent)
            raise
        except Exception as exc:
            self._put_back(batch)
            logger.warning(
                "could not write %d token-issued audit events (%s); will retry",
                len(batch),
                type(exc).__name__,
            )
            written = 0
        else:
            written = len(batch)
        self._report_drops()
        return written

    def _put_back(self, batch: list[IssuedToken]) -> None:
        """Return an unwritten batch to the front of the queue, as far as there is room."""
        room = max(0, self.capacity - len(self._pending))
        self._pending[:0] = batch[:room]
        lost = len(batch) - min(room, len(batch))
        self.dropped += lost
        self._unreported_drops += lost

    def _report_drops(self) -> None:
        if self._unreported_drops:
            logger.warning(
                "token-issued audit queue full: dropped %d events (%d since start)",
                self._unreported_drops,
                self.dropped,
            )
            self._unreported_drops = 0

    async def _write_until_stopped(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        while not self._stopping:
            with suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.flush_seconds)
            self._wake.clear()
            if self._pending or self._unreported_drops:
                await self.flush(sessions)

    @asynccontextmanager
    async def running(self, sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[None]:
        """Write the queue out in the background while the block runs; flush it at the end."""
        self._stopping = False
        self._wake = asyncio.Event()  # bound to the running loop
        writer = asyncio.create_task(self._write_until_stopped(sessions), name="token-audit")
        try:
            yield
        finally:
            self._stopping = True
            self._wake.set()
            try:
                # Let a write in progress finish rather than cancel it halfway.
                await asyncio.wait_for(writer, SHUTDOWN_SECONDS)
            except TimeoutError:
                logger.warning("token-issued audit writer did not stop in time")
            except Exception:
                logger.exception("token-issued audit writer failed")
            if self._pending:
                left = len(self._pending)
                try:
                    await asyncio.wait_for(self.flush(sessions), SHUTDOWN_SECONDS)
                except TimeoutError:
                    logger.warning("%d token-issued audit events lost at shutdown", left)
