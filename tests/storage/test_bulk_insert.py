"""Bulk inserts on the driver store exactly what SQLAlchemy's own insert stores, on both
backends; a batch of any size is cut into statements of a few fixed sizes."""

from __future__ import annotations

import os
import random
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, cast

import pytest
from sqlalchemy import Table, insert, select
from sqlalchemy.dialects import postgresql, sqlite

from personal_connectors.models import ConnectionEvent, new_time_ordered_ids
from personal_connectors.storage.bulk_insert import BulkInsert, driver_form, statement_sizes
from tests.support.service import ServiceProcess

EVENTS = cast(Table, ConnectionEvent.__table__)
COLUMNS = ("id", "connection_id", "organization_id", "type", "detail", "created_at")


def test_a_batch_is_full_statements_then_decreasing_powers_of_two() -> None:
    assert list(statement_sizes(1234, 500)) == [
        (0, 500),
        (500, 500),
        (1000, 128),
        (1128, 64),
        (1192, 32),
        (1224, 8),
        (1232, 2),
    ]
    assert list(statement_sizes(0, 500)) == []
    assert list(statement_sizes(3, 2)) == [(0, 2), (2, 1)]
    sizes_used: set[int] = set()
    for total in range(1, 2001):
        pieces = list(statement_sizes(total, 500))
        starts = [start for start, _ in pieces]
        assert starts == [sum(count for _, count in pieces[:i]) for i in range(len(pieces))]
        assert sum(count for _, count in pieces) == total
        sizes_used |= {count for _, count in pieces}
    # Every batch size from 1 to 2,000 used ten statement texts in all.
    assert sizes_used == {500, 256, 128, 64, 32, 16, 8, 4, 2, 1}


def test_columns_must_be_given_in_the_tables_order() -> None:
    with pytest.raises(ValueError, match="table's order"):
        BulkInsert(EVENTS, ("connection_id", "id"))


def test_a_statement_holds_one_to_the_drivers_limit_of_parameters() -> None:
    for rows in (0, 32_700 // len(COLUMNS) + 1):
        with pytest.raises(ValueError, match="parameters"):
            BulkInsert(EVENTS, COLUMNS, rows_per_statement=rows)


def test_a_column_left_to_its_python_default_is_refused() -> None:
    """Left out, ``created_at`` (default ``utcnow``) would add a parameter of its own to each
    row, and the rows' values would no longer line up with the statement's."""
    without_time = BulkInsert(EVENTS, COLUMNS[:-1])
    with pytest.raises(ValueError, match="not the parameters"):
        without_time.sql(sqlite.dialect(), 2)
    assert "?, ?, ?, ?, ?, ?), (" in BulkInsert(EVENTS, COLUMNS).sql(sqlite.dialect(), 2)


@pytest.mark.parametrize("dialect", [sqlite.dialect(), postgresql.asyncpg.dialect()])
def test_each_value_takes_the_form_sqlalchemys_bind_processing_gives_it(dialect: Any) -> None:
    randomly = random.Random(7)
    zones = [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))]
    times = [
        datetime(2000, 1, 1, tzinfo=UTC)
        + timedelta(seconds=randomly.randrange(10**9), microseconds=randomly.randrange(10**6))
        for _ in range(500)
    ]
    times += [each.replace(microsecond=0) for each in times[:50]]
    times = [each.astimezone(randomly.choice(zones)) for each in times]
    for name, values in {
        "created_at": times,
        "detail": [{"api_key_id": "key_1", "refreshed": True}, {}, {"n": [1, "x"]}],
        "type": ["connection.token_issued"],
    }.items():
        column = EVENTS.c[name]
        processor = column.type.dialect_impl(dialect).bind_processor(dialect)
        converted = driver_form(column, dialect)
        for value in values:
            assert converted(value) == (processor(value) if processor else value)
    with pytest.raises(ValueError, match="naive"):
        driver_form(EVENTS.c.created_at, dialect)(datetime(2026, 1, 1))


def stored_by(service: ServiceProcess, write: str, rows: list[dict[str, Any]]) -> list[Any]:
    """Insert ``rows`` with ``write`` ("bulk" or "core") and read them back through the ORM."""

    async def work(session, runtime):  # type: ignore[no-untyped-def]
        connection = await session.connection()
        if write == "bulk":
            bulk = BulkInsert(EVENTS, COLUMNS, rows_per_statement=7)
            forms = [bulk.driver_form(name, connection.dialect) for name in COLUMNS]

            def row_of(row: dict[str, Any]) -> tuple[Any, ...]:
                return tuple(form(row[name]) for form, name in zip(forms, COLUMNS, strict=True))

            await bulk.execute(connection, rows, row_of)
        else:
            await connection.execute(insert(EVENTS), rows)
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
