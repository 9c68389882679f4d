"""The token hot path's read: one statement, straight on the driver, tuned per backend.

Every tool call of the platform asks for a token first, so ``POST /{id}/token`` runs one read
(the caller's key, their membership and the connection, ``tokens.repository``) many thousand
times a second. This module runs such a read without SQLAlchemy's execution layer
(``PreparedRead``), on a connection of its own (``SQLiteHotReader``, ``PostgresHotReader``),
and on PostgreSQL many concurrent reads in one round trip (``PostgresHotReader``).
"""

from __future__ import annotations

import asyncio
import threading
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import asyncpg  # type: ignore[import-untyped]  # (no stubs; used through its documented API)
from sqlalchemy import Select, String, TableValuedAlias, bindparam, event, func
from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.engine.url import make_url

from personal_connectors.config import Settings
from personal_connectors.storage.database import is_sqlite

PARAMETER_SET_POSITION = "position"


@dataclass(frozen=True, eq=False)
class HotRead:
    """A read of at most one row, by named string parameters.

    ``many`` is the same read for many parameter sets in one statement, for the PostgreSQL
    reader: built over ``parameter_sets`` (its parameters are arrays of the same names), its
    first column the 1-based position of the set a row answers. Without it every read runs
    ``one``.
    """

    one: Select[Any]
    many: Select[Any] | None = None


def parameter_sets(*names: str) -> TableValuedAlias:
    """A PostgreSQL row source of parameter sets, one column per name plus their position:
    ``unnest(:a, :b) WITH ORDINALITY AS parameter_sets(a, b, position)``, where ``:a`` and
    ``:b`` are text arrays of equal length. Join a read's tables to its columns instead of to
    bind parameters to run the read for every set at once."""
    arrays = (bindparam(name, type_=ARRAY(String)) for name in names)
    return (
        func.unnest(*arrays)
        .table_valued(*names, with_ordinality=PARAMETER_SET_POSITION)
        .render_derived(name="parameter_sets")
    )


class PreparedRead:
    """A Core select compiled once for one dialect, to run straight on the DB-API driver.

    SQLAlchemy's execution layer (a session or connection, an execution context, a result
    object) costs several times the read itself on the token hot path: measured per lookup,
    SQLite 45 µs through a Core connection against 12 µs on the driver, PostgreSQL 240 µs
    through the asyncio adapter against 50 µs on asyncpg. What is kept from SQLAlchemy is
    everything that decides the answer: the SQL text its compiler writes for the dialect, and the
    result processing of the column types (``UTCDateTime``'s time zone, JSON, booleans), applied
    through the types' own processors. The parameters are plain strings, which need no bind
    processing on either driver.
    """

    def __init__(self, statement: Select[Any], dialect: Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        self.sql = compiled.string
        self.bind_names: tuple[str, ...] = tuple(compiled.positiontup or ())
        processors = (
            column.type.dialect_impl(dialect).result_processor(dialect, None)
            for column in statement.selected_columns
        )
        # Only the columns that have one (a few of twenty on the token path).
        self.processors = tuple(
            (index, process) for index, process in enumerate(processors) if process is not None
        )

    def arguments(self, parameters: Mapping[str, str]) -> list[str]:
        return [parameters[name] for name in self.bind_names]

    def row(self, values: Sequence[Any]) -> tuple[Any, ...]:
        processed = list(values)
        for index, process in self.processors:
            if processed[index] is not None:
                processed[index] = process(processed[index])
        return tuple(processed)


class HotReader(ABC):
    """Runs one prepared single-row read for the token hot path (``create_hot_reader``)."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self._prepared: dict[Select[Any], PreparedRead] = {}  # by identity: module constants

    def prepare(self, statement: Select[Any]) -> PreparedRead:
        """``statement``'s compiled form, built on first use."""
        prepared = self._prepared.get(statement)
        if prepared is None:
            prepared = self._prepared[statement] = PreparedRead(statement, self.dialect)
        return prepared

    @abstractmethod
    async def fetch_one(
        self, read: HotRead, parameters: Mapping[str, str]
    ) -> tuple[Any, ...] | None:
        """The row ``read`` finds for ``parameters`` (processed as SQLAlchemy would), or None."""

    @abstractmethod
    async def close(self) -> None: ...


class SQLiteHotReader(HotReader):
    """A read-only ``sqlite3`` connection used on the event loop's thread.

    aiosqlite runs every call on a thread of its own, so a query costs four or five hand-offs
    between that thread and the loop, several times the CPU of the query itself (a primary-key
    read from SQLite's page cache takes tens of microseconds). On the loop's thread the read
    blocks it only that long: in WAL mode a reader never waits for a writer, and the short busy
    timeout bounds the rare wait on a checkpoint.

    Each thread keeps its connection rather than taking one from the pool per read (a pool
    checkout and return, with its rollback, cost more than the read). Outside a transaction
    every SELECT reads the latest committed state and holds no snapshot between reads.
    """

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine.dialect)
        self.engine = engine
        self._held = threading.local()
        self._connections: list[Any] = []  # every thread's, closed by close()

    def _connection(self) -> Any:
        connection = getattr(self._held, "connection", None)
        if connection is None:
            connection = self.engine.raw_connection()  # with _blocking_reader_pragmas applied
            self._held.connection = connection
            self._connections.append(connection)
        return connection

    async def fetch_one(
        self, read: HotRead, parameters: Mapping[str, str]
    ) -> tuple[Any, ...] | None:
        # One at a time: with no round trip to save, a combined read costs as much per row.
        prepared = self.prepare(read.one)
        cursor = self._connection().cursor()
        try:
            cursor.execute(prepared.sql, prepared.arguments(parameters))
            values = cursor.fetchone()
        finally:
            cursor.close()
        return None if values is None else prepared.row(values)

    async def close(self) -> None:
        for connection in self._connections:
            connection.close()  # back to the pool, which dispose() then closes
        self._connections.clear()
        self._held = threading.local()
        self.engine.dispose()


# What a lost or refused connection raises (a read is then tried once more, on a new one).
_CONNECTION_ERRORS = (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, OSError)

_Waiting = tuple[Mapping[str, str], "asyncio.Future[tuple[Any, ...] | None]"]


class PostgresHotReader(HotReader):
    """An asyncpg pool of its own, opened on first use (it belongs to the serving loop).

    - One statement, no transaction: one round trip instead of three (BEGIN, SELECT, ROLLBACK).
    - No ping on checkout (SQLAlchemy's ``pool_pre_ping`` is a round trip of its own on every
      read) and no reset on release (asyncpg's default ``RESET ALL`` and friends, another
      round trip): the read changes no session state. A connection the server closed is found
      by the read itself, which is then tried once more on a fresh connection: a read-only
      statement can be repeated safely.
    - asyncpg prepares the statement once per connection and keeps it (its statement cache).
    - ``pool_size`` connections: sized to the expected concurrency, since a request waiting for
      a connection waits for someone else's round trip.
    - Reads asked for in the same turn of the event loop share one round trip (``fetch_one``):
      measured, the round trip (the socket write that wakes a backend, the answer, the pool) was
      most of a token request's cost here, 454 → 289 µs of CPU a request with it shared.
    """

    def __init__(self, url: str, pool_size: int) -> None:
        dialect = make_url(url).set(drivername="postgresql+asyncpg").get_dialect()()
        super().__init__(dialect)
        # Its asyncpg codec hooks are untyped.
        self.asyncpg_dialect: Any = dialect
        _, options = dialect.create_connect_args(make_url(url))
        # SQLAlchemy's names for asyncpg's statement cache options, if the URL sets them.
        if "prepared_statement_cache_size" in options:
            options["statement_cache_size"] = options.pop("prepared_statement_cache_size")
        options.pop("prepared_statement_name_func", None)
        self.options: dict[str, Any] = dict(options)
        self.pool_size = pool_size
        self._pool: asyncpg.Pool | None = None
        self._opening = asyncio.Lock()
        self._waiting: dict[HotRead, list[_Waiting]] = {}  # reads asked for this loop turn
        self._batches: set[asyncio.Task[None]] = set()

    async def _get_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            async with self._opening:
                if self._pool is None:
                    self._pool = await asyncpg.create_pool(
                        min_size=1,
                        max_size=self.pool_size,
                        init=self._decode_like_sqlalchemy,
                        reset=_keep_session,
                        **self.options,
                    )
        return self._pool

    async def _decode_like_sqlalchemy(self, connection: asyncpg.Connection) -> None:
        """JSON is decoded by asyncpg codecs SQLAlchemy's dialect installs on its own connections
        (its JSON types then have no result processor): the dialect's hooks install them here."""
        adapted = SimpleNamespace(_connection=connection)  # what the hooks read the driver from
        await self.asyncpg_dialect.setup_asyncpg_json_codec(adapted)
        await self.asyncpg_dialect.setup_asyncpg_jsonb_codec(adapted)

    async def fetch_one(
        self, read: HotRead, parameters: Mapping[str, str]
    ) -> tuple[Any, ...] | None:
        """Joins the reads of ``read`` asked for in the same turn of the event loop.

        The first one schedules the batch at the end of the loop's current turn, so every
        request parsed in that turn (uvicorn hands over all the sockets that became readable
        at once) is in it; none waits for a later one or for a timer.
        """
        if read.many is None:
            return await self._fetch_alone(read.one, parameters)
        waiter: asyncio.Future[tuple[Any, ...] | None] = asyncio.get_running_loop().create_future()
        waiting = self._waiting.setdefault(read, [])
        waiting.append((parameters, waiter))
        if len(waiting) == 1:
            asyncio.get_running_loop().call_soon(self._start_batch, read)
        return await waiter

    def _start_batch(self, read: HotRead) -> None:
        batch = self._waiting.pop(read)
        task = asyncio.get_running_loop().create_task(self._run_batch(read, batch))
        self._batches.add(task)  # a task only weakly referenced by the loop could be collected
        task.add_done_callback(self._batches.discard)

    async def _run_batch(self, read: HotRead, batch: list[_Waiting]) -> None:
        waiters = [waiter for _, waiter in batch]
        try:
            if len(batch) == 1:
                rows = [await self._fetch_alone(read.one, batch[0][0])]
            else:
                assert read.many is not None  # (fetch_one batches only reads that have one)
                rows = await self._fetch_many(read.many, [parameters for parameters, _ in batch])
        except asyncio.CancelledError:
            for waiter in waiters:
                waiter.cancel()
            raise
        except Exception as exc:
            if len(batch) == 1 or isinstance(exc, _CONNECTION_ERRORS):
                # The database is unreachable (already retried once): each read would fail.
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_exception(exc)
                return
            # Anything else may be one request's parameters (a value PostgreSQL refuses): each
            # read alone, so that one caller's bad request never fails another's.
            await asyncio.gather(
                *(self._answer_alone(read, parameters, waiter) for parameters, waiter in batch)
            )
            return
        for waiter, row in zip(waiters, rows, strict=True):
            if not waiter.done():  # (a request cancelled while it waited)
                waiter.set_result(row)

    async def _answer_alone(
        self, read: HotRead, parameters: Mapping[str, str], waiter: asyncio.Future[Any]
    ) -> None:
        try:
            row = await self._fetch_alone(read.one, parameters)
        except Exception as exc:
            if not waiter.done():
                waiter.set_exception(exc)
        else:
            if not waiter.done():
                waiter.set_result(row)

    async def _fetch_alone(
        self, statement: Select[Any], parameters: Mapping[str, str]
    ) -> tuple[Any, ...] | None:
        prepared = self.prepare(statement)
        record = await self._query("fetchrow", prepared.sql, prepared.arguments(parameters))
        return None if record is None else prepared.row(record)

    async def _fetch_many(
        self, statement: Select[Any], parameter_sets: Sequence[Mapping[str, str]]
    ) -> list[tuple[Any, ...] | None]:
        prepared = self.prepare(statement)
        arrays = [[each[name] for each in parameter_sets] for name in prepared.bind_names]
        found: dict[int, tuple[Any, ...]] = {}
        for record in await self._query("fetch", prepared.sql, arrays):
            row = prepared.row(record)
            found[row[0]] = row[1:]
        return [found.get(position) for position in range(1, len(parameter_sets) + 1)]

    async def _query(self, method: str, sql: str, arguments: Sequence[Any]) -> Any:
        pool = self._pool or await self._get_pool()
        try:
            return await getattr(pool, method)(sql, *arguments)
        except _CONNECTION_ERRORS:
            # Once more, on a new connection: a read can be repeated safely.
            return await getattr(pool, method)(sql, *arguments)

    async def close(self) -> None:
        if self._batches:
            await asyncio.gather(*self._batches, return_exceptions=True)
        if self._pool is not None:
            await self._pool.close()


async def _keep_session(_connection: asyncpg.Connection) -> None:
    """Nothing to reset: the hot reader only runs single SELECTs outside transactions."""


def create_hot_reader(settings: Settings) -> HotReader | None:
    """The reader of the token hot path's single statement, tuned per backend (see the classes).

    None for an in-memory SQLite database (a second connection would see another, empty one).
    """
    url = settings.sqlalchemy_url
    if not is_sqlite(url):
        return PostgresHotReader(url, settings.hot_read_pool_size)
    if make_url(url).database in (None, "", ":memory:"):
        return None
    engine = create_sync_engine(
        url.replace("sqlite+aiosqlite://", "sqlite://", 1),
        connect_args={"check_same_thread": False},
        hide_parameters=True,
        pool_size=2,
        max_overflow=2,
    )
    event.listen(engine, "connect", _blocking_reader_pragmas)
    return SQLiteHotReader(engine)


def _blocking_reader_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()  # (WAL is the database's mode, set by the main engine)
    cursor.execute("PRAGMA busy_timeout=1000")
    cursor.execute("PRAGMA query_only=ON")
    cursor.close()
