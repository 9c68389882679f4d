"""The ``connection.token_issued`` audit trail, written in batches off the hot path.

Every token handed out is an audit event, but writing one row per request would make the
busiest endpoint a writer: a transaction, a commit and (on SQLite) the single write lock per
call. Instead the endpoint only appends to an in-memory queue, and one background task per
process inserts what accumulated every second (or as soon as 5,000 are queued) in one
transaction, 500 rows to a statement.

Trade-offs, on purpose:

* A full queue drops the newest events and counts them (logged as a warning) rather than slow
  the hot path down or grow without bound; the queue holds many seconds of traffic, so it only
  fills when the database has stopped taking writes for that long.
* Events still queued when the process dies without a graceful shutdown (SIGKILL, a crash) are
  lost; a graceful shutdown (SIGTERM) flushes them. At most about one second of events is at
  risk.
* Event rows are bulk-inserted rather than added through ``ConnectionRepository.record``
  (no connection object is at hand); ``webhooks.outbox.enqueue_recorded`` adds, in the same
  transaction, the deliveries owed to the endpoints that opted in to this type.
* The insert runs straight on the driver (``storage.bulk_insert``), not through the ORM or a
  Core executemany: the writer shares the event loop with the token route, and their per-value
  work was most of the write's loop CPU (measured per row on SQLite: 21 µs ORM, 12 µs Core,
  5.4 µs on the driver, all of a flush's loop work included).

The rows hold identifiers and a flag, never a token.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Dialect, Table
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from personal_connectors.events.outbox import RecordedEvent
from personal_connectors.events.repository import EventRepository
from personal_connectors.events.types import EventType
from personal_connectors.models import ConnectionEvent, new_time_ordered_ids, utcnow
from personal_connectors.storage.bulk_insert import ROWS_PER_STATEMENT, BulkInsert, Row

logger = logging.getLogger(__name__)

QUEUE_CAPACITY = 20_000  # several seconds of a single worker's peak token rate
# The queue length that triggers a write before the second is up. A flush is one transaction
# however many statements it takes, and SQLite writes every index page a transaction touched
# to its log once at commit: a second's worth of rows in one commit shares more pages than
# five commits of 500 (the connection index is keyed at random). Measured on SQLite at about
# 2,800 tokens a second: 394-413 → 365-367 µs of server CPU a token request.
FLUSH_AT = 5_000
FLUSH_SECONDS = 1.0
SHUTDOWN_SECONDS = 10.0  # how long a graceful shutdown waits for the last write

_COLUMNS = ("id", "connection_id", "organization_id", "type", "detail", "created_at")
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
        self._insert = BulkInsert(
            cast(Table, ConnectionEvent.__table__), _COLUMNS, rows_per_statement=batch_size
        )
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
                connection = await session.connection()
                await self._insert.execute(
                    connection,
                    list(zip(batch, ids, strict=True)),
                    self._row_maker(connection.dialect),
                )
                # The deliveries owed to endpoints that opted in to this type.
                await EventRepository(session).enqueue(
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

    def _row_maker(self, dialect: Dialect) -> Callable[[tuple[IssuedToken, str]], Row]:
        """What turns an event and its id into its row, in the driver's form, in ``_COLUMNS``
        order."""
        time_of = self._insert.driver_form("created_at", dialect)
        detail_of = self._insert.driver_form("detail", dialect)
        # A detail is one of two per API key: each is converted (serialized) once a flush.
        details: dict[tuple[str, bool], Any] = {}

        def row_of(item: tuple[IssuedToken, str]) -> Row:
            event, event_id = item
            detail = details.get((event.api_key_id, event.refreshed))
            if detail is None:
                detail = details[(event.api_key_id, event.refreshed)] = detail_of(event.detail)
            return (
                event_id,
                event.connection_id,
                event.organization_id,
                _TYPE,
                detail,
                time_of(event.at),
            )

        return row_of

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
