"""The database driver's own connections for the token path's read (``tokens.repository``
says why that read bypasses SQLAlchemy) and the MCP gateway's (``mcp_servers.repository``):
plain SQL in, the driver's rows out.

- SQLite: a read-only ``sqlite3`` connection per thread, used on the event loop's thread. In
  WAL mode a reader never waits for a writer, and a short busy timeout bounds the rare wait on
  a checkpoint; aiosqlite would hand every call to a thread of its own and back.
- PostgreSQL: an asyncpg pool of its own, opened on first use (it belongs to the serving loop),
  with no ping on checkout and no reset on release (single SELECTs outside transactions change
  no session state); reads asked for in the same turn of the event loop share one statement.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine.url import make_url

from personal_connectors.config import Settings
from personal_connectors.storage.database import is_sqlite
from personal_connectors.telemetry import tracing

# What a lost or refused connection raises (a read is then tried once more, on a new one).
if TYPE_CHECKING:
    import asyncpg  # type: ignore[import-untyped]  # (no stubs; used through its documented API)

Row = tuple[Any, ...]
# How much of the database file the token reader maps (SQLite's ``mmap_size``; address space,
# not memory: pages come from the OS page cache).
READER_MMAP_BYTES = 1 << 30
_Waiting = tuple[Sequence[Any], "asyncio.Future[Row | None]"]


class SQLiteReader:
    """Each thread keeps its connection (a pool checkout and return cost more than the read);
    outside a transaction every SELECT reads the latest committed state."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._held = threading.local()
        self._connections: list[sqlite3.Connection] = []  # every thread's, closed by close()

    def _connection(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._held, "connection", None)
        if connection is None:
            connection = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            connection.execute("PRAGMA busy_timeout=1000")
            connection.execute("PRAGMA query_only=ON")
            # Pages read through a memory map, not a read() each: the lookups land on random
            # rows of a file larger than SQLite's default 2 MiB page cache.
            connection.execute(f"PRAGMA mmap_size={READER_MMAP_BYTES}")
            self._held.connection = connection
            self._connections.append(connection)
        return connection

    def fetch_row(self, sql: str, parameters: dict[str, str | None]) -> Row | None:
        row: Row | None = self._connection().execute(sql, parameters).fetchone()
        return row

    def fetch_rows(self, sql: str, parameters: dict[str, str | None]) -> list[Row]:
        """Every row ``sql`` finds (a read of a few rows: the MCP gateway's)."""
        rows: list[Row] = self._connection().execute(sql, parameters).fetchall()
        return rows

    def usage(self) -> tuple[int, int] | None:
        """No pool: a connection per thread, held for good (nothing to report)."""
        return None

    async def close(self) -> None:
        for connection in self._connections:
            connection.close()
        self._connections.clear()
        self._held = threading.local()


class PostgresReader:
    """``fetch_row`` joins the reads of one statement asked for in the same turn of the event
    loop: the first schedules the batch at the end of the turn, so every request parsed in that
    turn is in it and none waits for a later one or a timer. The batch runs the statement's
    ``many`` form once, with one array per parameter."""

    def __init__(self, dsn: str, pool_size: int) -> None:
        import asyncpg  # here, not at start-up: a SQLite deployment never loads it

        self._asyncpg = asyncpg
        # Failures of the connection rather than of the statement: a read is tried again.
        self._connection_errors = (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, OSError)
        self.dsn = dsn
        self.pool_size = pool_size
        self._pool: asyncpg.Pool | None = None
        self._opening = asyncio.Lock()
        self._waiting: dict[str, list[_Waiting]] = {}  # by ``many`` statement, this loop turn
        self._batches: set[asyncio.Task[None]] = set()

    async def _get_pool(self) -> asyncpg.Pool:
        async with self._opening:
            if self._pool is None:
                self._pool = await self._asyncpg.create_pool(
                    self.dsn, min_size=1, max_size=self.pool_size, reset=_keep_session
                )
        return self._pool

    async def query(self, method: str, sql: str, arguments: Sequence[Any]) -> Any:
        """One round trip: ``method`` (``fetch`` or ``fetchrow``) of the pool, tried once more
        on a new connection if the one it had was lost (a read can be repeated safely)."""
        pool = self._pool or await self._get_pool()
        try:
            return await getattr(pool, method)(sql, *arguments)
        except self._connection_errors:
            return await getattr(pool, method)(sql, *arguments)

    async def fetch_row(self, one: str, many: str, arguments: Sequence[Any]) -> Row | None:
        """The row ``one`` finds for ``arguments``, read together with the others of this turn
        by ``many``: ``one``'s parameters as arrays, each row led by its set's 1-based position.
        """
        waiter: asyncio.Future[Row | None] = asyncio.get_running_loop().create_future()
        waiting = self._waiting.setdefault(many, [])
        waiting.append((arguments, waiter))
        if len(waiting) == 1:
            asyncio.get_running_loop().call_soon(self._start_batch, one, many)
        return await waiter

    async def fetch_alone(self, one: str, arguments: Sequence[Any]) -> Row | None:
        record = await self.query("fetchrow", one, arguments)
        return None if record is None else tuple(record)

    async def fetch_rows(self, sql: str, arguments: Sequence[Any]) -> list[Row]:
        """Every row ``sql`` finds, in one round trip of its own (not batched)."""
        return [tuple(record) for record in await self.query("fetch", sql, arguments)]

    def _start_batch(self, one: str, many: str) -> None:
        batch = self._waiting.pop(many)
        task = asyncio.get_running_loop().create_task(self._run_batch(one, many, batch))
        self._batches.add(task)  # a task only weakly referenced by the loop could be collected
        task.add_done_callback(self._batches.discard)

    async def _run_batch(self, one: str, many: str, batch: list[_Waiting]) -> None:
        waiters = [waiter for _, waiter in batch]
        try:
            if len(batch) == 1:
                rows = [await self.fetch_alone(one, batch[0][0])]
            else:
                rows = await self._fetch_many(many, [arguments for arguments, _ in batch])
        except asyncio.CancelledError:
            for waiter in waiters:
                waiter.cancel()
            raise
        except Exception as exc:
            if len(batch) == 1 or isinstance(exc, self._connection_errors):
                # The database is unreachable (already retried once): each read would fail.
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_exception(exc)
                return
            # Anything else may be one request's values (one PostgreSQL refuses): each read
            # alone, so that one caller's bad request never fails another's.
            await asyncio.gather(*(self._answer_alone(one, *waiting) for waiting in batch))
            return
        for waiter, row in zip(waiters, rows, strict=True):
            if not waiter.done():  # (a request cancelled while it waited)
                waiter.set_result(row)

    async def _answer_alone(
        self, one: str, arguments: Sequence[Any], waiter: asyncio.Future[Row | None]
    ) -> None:
        try:
            row = await self.fetch_alone(one, arguments)
        except Exception as exc:
            if not waiter.done():
                waiter.set_exception(exc)
        else:
            if not waiter.done():
                waiter.set_result(row)

    async def _fetch_many(self, many: str, sets: Sequence[Sequence[Any]]) -> list[Row | None]:
        arrays = [list(values) for values in zip(*sets, strict=True)]
        found = {record[0]: tuple(record)[1:] for record in await self.query("fetch", many, arrays)}
        return [found.get(position) for position in range(1, len(sets) + 1)]

    def usage(self) -> tuple[int, int] | None:
        """Connections of the pool (in use, idle); None before it opened."""
        if self._pool is None:
            return None
        idle = self._pool.get_idle_size()
        return self._pool.get_size() - idle, idle

    async def close(self) -> None:
        if self._batches:
            await asyncio.gather(*self._batches, return_exceptions=True)
        if self._pool is not None:
            await self._pool.close()


async def _keep_session(_connection: asyncpg.Connection) -> None:
    """Nothing to reset: the reader only runs single SELECTs outside transactions."""


class TracedSQLiteReader(SQLiteReader):
    """With tracing on (``telemetry.tracing``): a span around each lookup. The plain class
    serves otherwise, so tracing that is off costs the token path nothing."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self._tracer = tracing.tracer(__name__)
        self._kind = tracing.client_kind()

    def fetch_row(self, sql: str, parameters: dict[str, str | None]) -> Row | None:
        with self._tracer.start_as_current_span(
            "token lookup", kind=self._kind, attributes={"db.system": "sqlite"}
        ):
            return super().fetch_row(sql, parameters)

    def fetch_rows(self, sql: str, parameters: dict[str, str | None]) -> list[Row]:
        with self._tracer.start_as_current_span(
            "connections read", kind=self._kind, attributes={"db.system": "sqlite"}
        ):
            return super().fetch_rows(sql, parameters)


class TracedPostgresReader(PostgresReader):
    """As ``TracedSQLiteReader``; the span covers the wait for the batch it joins."""

    def __init__(self, dsn: str, pool_size: int) -> None:
        super().__init__(dsn, pool_size)
        self._tracer = tracing.tracer(__name__)
        self._kind = tracing.client_kind()

    async def fetch_row(self, one: str, many: str, arguments: Sequence[Any]) -> Row | None:
        with self._tracer.start_as_current_span(
            "token lookup", kind=self._kind, attributes={"db.system": "postgresql"}
        ):
            return await super().fetch_row(one, many, arguments)

    async def fetch_rows(self, sql: str, arguments: Sequence[Any]) -> list[Row]:
        with self._tracer.start_as_current_span(
            "connections read", kind=self._kind, attributes={"db.system": "postgresql"}
        ):
            return await super().fetch_rows(sql, arguments)


HotReader = SQLiteReader | PostgresReader


def create_hot_reader(settings: Settings) -> HotReader | None:
    """The hot path's reader (tokens, proxy, MCP gateway) for the configured database; None for
    an in-memory SQLite database (a second connection would see another, empty one)."""
    url = make_url(settings.sqlalchemy_url)
    if not is_sqlite(settings.sqlalchemy_url):
        dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        postgres = TracedPostgresReader if tracing.active() else PostgresReader
        return postgres(dsn, settings.hot_read_pool_size)
    if url.database in (None, "", ":memory:"):
        return None
    sqlite = TracedSQLiteReader if tracing.active() else SQLiteReader
    return sqlite(url.database)
