"""Event rows inserted as plain SQL on the driver (the token-issued audit's writes) store
exactly what SQLAlchemy's own insert stores, on both backends; a batch of any size is cut into
statements of a few fixed sizes."""

from __future__ import annotations

import json
import os
import random
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, cast

import pytest
from sqlalchemy import Table, insert, select
from sqlalchemy.dialects import sqlite

from personal_connectors.events.repository import EventRepository, sqlite_time, statement_sizes
from personal_connectors.models import ConnectionEvent, new_time_ordered_ids
from tests.support.service import ServiceProcess

EVENTS = cast(Table, ConnectionEvent.__table__)


def test_a_batch_is_full_statements_then_decreasing_powers_of_two() -> None:
    assert list(statement_sizes(1234, 500)) == [500, 500, 128, 64, 32, 8, 2]
    assert list(statement_sizes(0, 500)) == []
    assert list(statement_sizes(3, 2)) == [2, 1]
    sizes_used: set[int] = set()
    for total in range(1, 2001):
        pieces = list(statement_sizes(total, 500))
        assert sum(pieces) == total
        sizes_used |= set(pieces)
    # Every batch size from 1 to 2,000 used ten statement texts in all.
    assert sizes_used == {500, 256, 128, 64, 32, 16, 8, 4, 2, 1}


def test_a_time_is_stored_on_sqlite_as_sqlalchemy_stores_it() -> None:
    """The text must be SQLAlchemy's exactly: SQLite compares stored times as text."""
    randomly = random.Random(7)
    zones = [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))]
    times = [
        datetime(2000, 1, 1, tzinfo=UTC)
        + timedelta(seconds=randomly.randrange(10**9), microseconds=randomly.randrange(10**6))
        for _ in range(500)
    ]
    times += [each.replace(microsecond=0) for each in times[:50]]
    times = [each.astimezone(randomly.choice(zones)) for each in times]
    dialect = sqlite.dialect()
    processor = EVENTS.c.created_at.type.dialect_impl(dialect).bind_processor(dialect)
    assert processor is not None
    for value in times:
        assert sqlite_time(value) == processor(value)
    with pytest.raises(ValueError, match="naive"):
        sqlite_time(datetime(2026, 1, 1))


def stored_by(service: ServiceProcess, write: str, rows: list[dict[str, Any]]) -> list[Any]:
    """Insert ``rows`` with ``write`` ("bulk" or "core") and read them back through the ORM."""

    async def work(session, runtime):  # type: ignore[no-untyped-def]
        if write == "bulk":
            values = (
                (
                    r["id"],
                    r["connection_id"],
                    r["organization_id"],
                    r["type"],
                    json.dumps(r["detail"]),
                    r["created_at"],
                )
                for r in rows
            )
            await EventRepository(session).insert_many(len(rows), values, rows_per_statement=7)
        else:
            await (await session.connection()).execute(insert(EVENTS), rows)
        await session.commit()
        found = await session.execute(
            select(ConnectionEvent)
            .where(ConnectionEvent.id.in_([row["id"] for row in rows]))
            .order_by(ConnectionEvent.id)
        )
        return [
            (e.connection_id, e.organization_id, e.type, e.detail, e.created_at)
            for e in found.scalars()
        ]

    return cast(list[Any], service.run_db(work))


def test_rows_read_back_as_if_sqlalchemy_had_inserted_them(service: ServiceProcess) -> None:
    """Thirty rows (statements of 7, 7, 7, 7, 2): every value, the times in several zones and
    microseconds, reads back equal to the same rows inserted by a Core insert."""
    connection_id = f"conn_{os.urandom(8).hex()}"
    at = datetime(2026, 3, 4, 5, 6, 7, 890_123, tzinfo=timezone(timedelta(hours=2)))

    def batch() -> list[dict[str, Any]]:
        return [
            {
                "id": event_id,
                "connection_id": connection_id,
                "organization_id": "org_bulk",
                "type": "connection.token_issued",
                "detail": {"api_key_id": f"key_{n % 3}", "refreshed": n % 2 == 0},
                "created_at": at + timedelta(seconds=n, microseconds=-n * 1_000 if n else 0),
            }
            for n, event_id in enumerate(new_time_ordered_ids("evt", 30))
        ]

    bulk, core = stored_by(service, "bulk", batch()), stored_by(service, "core", batch())
    assert len(bulk) == 30
    assert bulk == core
    assert bulk[0][4] == at.astimezone(UTC)  # aware, in UTC, the same instant
