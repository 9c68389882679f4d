"""Async engine and session factory for SQLite (embedded default) and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.engine.url import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from personal_connectors.config import Settings


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def create_engine(settings: Settings) -> AsyncEngine:
    url = settings.sqlalchemy_url
    if is_sqlite(url):
        database = make_url(url).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(
            url, connect_args={"timeout": 30}, hide_parameters=True, pool_size=20, max_overflow=20
        )
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(
        url, pool_size=10, max_overflow=20, pool_pre_ping=True, hide_parameters=True
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


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def create_hot_reader(settings: Settings) -> Engine | AsyncEngine | None:
    """An engine for the token hot path's single-statement read, tuned per backend.

    SQLite: a synchronous, read-only engine used on the event loop's thread. aiosqlite runs
    every call on a thread of its own, so a query costs four or five hand-offs between that
    thread and the loop, several times the CPU of the query itself (a primary-key read from
    SQLite's page cache takes tens of microseconds). On the loop's thread the read blocks it
    only that long: in WAL mode a reader never waits for a writer, and the short busy timeout
    bounds the rare wait on a checkpoint.

    PostgreSQL: an autocommit engine with a pool of its own. One SELECT needs no transaction;
    without one it is one round trip instead of three (BEGIN, SELECT, ROLLBACK), and the ping
    on checkout one instead of three.

    None for an in-memory SQLite database (a second engine would see another, empty one).
    """
    url = settings.sqlalchemy_url
    if not is_sqlite(url):
        return create_async_engine(
            url,
            isolation_level="AUTOCOMMIT",
            skip_autocommit_rollback=True,
            # No overflow: a burst waits a moment for a pooled connection, where overflow
            # connections would be opened and closed again and again (measured: a third of the
            # throughput at 32 concurrent requests).
            pool_size=20,
            max_overflow=0,
            pool_pre_ping=True,
            hide_parameters=True,
        )
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
    return engine


def _blocking_reader_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()  # (WAL is the database's mode, set by the main engine)
    cursor.execute("PRAGMA busy_timeout=1000")
    cursor.execute("PRAGMA query_only=ON")
    cursor.close()


@asynccontextmanager
async def open_database(settings: Settings) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(settings)
    try:
        yield create_sessionmaker(engine)
    finally:
        await engine.dispose()
