"""Async engine and session factory for SQLite (embedded default) and PostgreSQL."""

from __future__ import annotations

import os
import stat
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine.url import make_url
from sqlalchemy.ext import asyncio as sqlalchemy_asyncio
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from personal_connectors.config import Settings

# SQLSTATE classes of a server that cannot serve now: 08 connection exception, 57P operator
# intervention (shutting down, crashed, starting up).
_UNAVAILABLE_SQLSTATES = ("08", "57P")


def database_unavailable(failure: BaseException) -> bool:
    """Whether ``failure`` is the database being out of reach (a restart, a lost or refused
    connection) rather than something wrong with the statement: the same work succeeds once it
    is back. Looks through every exception it was raised from or while handling (SQLAlchemy and
    asyncpg wrap it; the token path's reader retries once on a new connection)."""
    pending: list[BaseException] = [failure]
    seen: set[int] = set()
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if _unavailable(current):
            return True
        pending.extend(e for e in (current.__cause__, current.__context__) if e is not None)
    return False


def _unavailable(error: BaseException) -> bool:
    if isinstance(error, OSError):
        return True
    if getattr(error, "connection_invalidated", False):
        return True  # sqlalchemy.exc.DBAPIError on a connection found dead
    sqlstate = getattr(error, "sqlstate", None)
    if isinstance(sqlstate, str) and sqlstate.startswith(_UNAVAILABLE_SQLSTATES):
        return True
    # asyncpg: "connection is closed", or its protocol left mid-operation by a lost connection
    # ("cannot switch to state …; another operation is in progress").
    return type(error).__module__.startswith("asyncpg") and type(error).__name__ in {
        "InterfaceError",
        "InternalClientError",
        "ConnectionDoesNotExistError",
    }


def create_async_engine(url: Any, **options: Any) -> AsyncEngine:
    """SQLAlchemy's factory, looked up on its module at each call: with tracing on, the
    SQLAlchemy instrumentation wraps it there (``telemetry.tracing``)."""
    return sqlalchemy_asyncio.create_async_engine(url, **options)


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def create_engine(settings: Settings) -> AsyncEngine:
    url = settings.sqlalchemy_url
    if is_sqlite(url):
        database = make_url(url).database
        if database and database != ":memory:":
            _private_sqlite_file(Path(database), data_dir=settings.is_embedded)
        engine = create_async_engine(
            url, connect_args={"timeout": 30}, hide_parameters=True, pool_size=20, max_overflow=20
        )
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        # Core executemany inserts (a refresh batch's events) as multi-row INSERTs: sqlite3's
        # executemany steps once per row, releasing Python's global lock each time, which the
        # serving thread then has to win back. (The token-issued audit goes through
        # events.repository.insert_many.)
        engine.sync_engine.dialect.use_insertmanyvalues_wo_returning = True
        return engine
    return create_async_engine(
        url, pool_size=10, max_overflow=20, pool_pre_ping=True, hide_parameters=True
    )


def _private_sqlite_file(path: Path, *, data_dir: bool) -> None:
    """The database holds sealed tokens and key digests: its folder is made 0700 and the file
    0600 before SQLite opens it (SQLite gives its ``-wal`` and ``-shm`` files the database
    file's mode). An existing file is narrowed to its owner too; an existing folder only when it
    is the service's own data folder (a database elsewhere may sit in a shared one)."""
    folder = path.parent
    if data_dir and folder.is_dir():
        _narrow(folder)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    _narrow(path)


def _narrow(path: Path) -> None:
    """Take group and other bits off ``path`` when this user owns it (else it is not ours to
    change, and SQLite reports whatever access it lacks)."""
    status = path.stat()
    mode = stat.S_IMODE(status.st_mode)
    if mode & 0o077 and status.st_uid == os.getuid():
        path.chmod(mode & ~0o077)


def create_unpinged_engine(engine: AsyncEngine, pool_size: int) -> AsyncEngine:
    """A PostgreSQL pool of ``engine``'s database without its ping on checkout, for a writer
    that retries a failed transaction anyway (``refresher.writes``): the ping is a round trip
    of its own before every transaction, and a connection found dead fails its transaction,
    invalidates the pool's older connections, and the retry takes a new one."""
    return create_async_engine(
        engine.url, pool_size=pool_size, max_overflow=pool_size, hide_parameters=True
    )


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers run beside the one writer; busy_timeout makes several worker processes
    # queue for the write lock instead of failing with "database is locked".
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def pool_usage(engine: AsyncEngine) -> tuple[int, int] | None:
    """The engine's pooled connections (in use, idle); None for a pool that keeps no count."""
    pool = engine.pool
    checked_out = getattr(pool, "checkedout", None)
    checked_in = getattr(pool, "checkedin", None)
    if checked_out is None or checked_in is None:
        return None
    return int(checked_out()), int(checked_in())


async def ping(engine: AsyncEngine) -> None:
    """One trivial statement: raises when the database does not answer."""
    async with engine.connect() as connection:
        await connection.execute(text("SELECT 1"))


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


@asynccontextmanager
async def open_database(settings: Settings) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(settings)
    try:
        yield create_sessionmaker(engine)
    finally:
        await engine.dispose()
