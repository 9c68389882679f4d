"""Database access for the audit trail (``connection_events``) and the webhook deliveries each
event owes (``events.outbox``), which are added in the event's transaction, where it is recorded.

``insert_many`` writes the token-issued audit (a row per token handed out) as plain multi-row
INSERTs on the driver, keeping SQLAlchemy's per-value processing of an executemany off the event
loop that also serves the token route.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from functools import cache
from itertools import islice
from typing import Any, cast

from sqlalchemy import CursorResult, Table, bindparam, delete, exists, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from personal_connectors.events import outbox
from personal_connectors.events.outbox import RecordedEvent, Subscriptions
from personal_connectors.events.types import EventType
from personal_connectors.models import (
    APIKey,
    Connection,
    ConnectionEvent,
    DeliveryStatus,
    EndUser,
    WebhookDelivery,
    WebhookEndpoint,
    new_time_ordered_ids,
    utcnow,
)

# A row of ``insert_many``: id, connection id, organization id, type, detail as JSON text, time.
EventValues = tuple[str, str, str, str, str, datetime]
_COLUMNS = ("id", "connection_id", "organization_id", "type", "detail", "created_at")
ROWS_PER_STATEMENT = 500


def statement_sizes(total: int, largest: int) -> Iterator[int]:
    """The row count of each statement for ``total`` rows: as many of ``largest`` as fit, then
    the rest in decreasing powers of two, so that batches of any size share a few statement
    texts (ten for 500), each prepared once by the driver."""
    done = 0
    while total - done >= largest:
        yield largest
        done += largest
    size = 1 << max(largest.bit_length() - 1, 0)
    while done < total:
        while size > total - done:
            size >>= 1
        yield size
        done += size


@cache
def _insert_sql(rows: int, paramstyle: str) -> str:
    width = len(_COLUMNS)
    if paramstyle == "qmark":
        values = ", ".join(["(" + ", ".join(["?"] * width) + ")"] * rows)
    elif paramstyle == "numeric_dollar":
        values = ", ".join(
            "(" + ", ".join(f"${row * width + n + 1}" for n in range(width)) + ")"
            for row in range(rows)
        )
    else:
        raise ValueError(f"no multi-row insert for the {paramstyle} parameter style")
    # Constant names and placeholders only: the values travel as parameters.
    return f"INSERT INTO connection_events ({', '.join(_COLUMNS)}) VALUES {values}"  # noqa: S608


def sqlite_time(value: datetime) -> str:
    """A time as ``models.base.UTCDateTime`` stores it on SQLite: SQLAlchemy's text of the naive
    UTC time (which sorts and compares as the time does)."""
    if value.tzinfo is None:
        raise ValueError("naive datetimes are not stored")
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def event_row(connection: Connection, event: EventType, **detail: Any) -> dict[str, Any]:
    """An audit event's column values, for ``record`` or a bulk insert (``tokens.refresh``);
    timed now, so that events keep the order they were recorded in (never a token in
    ``detail``). A bulk writer hands the rows to ``EventRepository.enqueue_rows``."""
    return {
        "id": new_time_ordered_ids("evt")[0],
        "connection_id": connection.id,
        "organization_id": connection.organization_id,
        "type": event,
        "detail": detail,
        "created_at": utcnow(),
    }


class EventRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def record(self, connection: Connection, event: EventType, **detail: Any) -> None:
        """Add an audit event, and the webhook deliveries it owes, to the current transaction
        (never with a token in ``detail``)."""
        row = ConnectionEvent(**event_row(connection, event, **detail))
        self.session.add(row)
        recorded = RecordedEvent.of(row)
        subscriptions = await self._subscriptions({connection.organization_id})
        if endpoint_ids := outbox.subscribers(subscriptions, recorded):
            end_users = await self._end_users({connection.user_id})
            end_user_id = end_users.get(connection.user_id)
            self.session.add_all(outbox.deliveries(recorded, connection, endpoint_ids, end_user_id))

    async def insert_many(
        self,
        total: int,
        rows: Iterable[EventValues],
        *,
        rows_per_statement: int = ROWS_PER_STATEMENT,
    ) -> None:
        """Insert ``total`` event rows in the session's transaction, at most
        ``rows_per_statement`` a statement. ``rows`` are consumed one statement at a time,
        between the statements' awaits, so a large batch never holds the event loop for long.
        """
        connection = await self.session.connection()
        dialect = connection.dialect
        sqlite = dialect.name == "sqlite"
        pending = iter(rows)
        for count in statement_sizes(total, rows_per_statement):
            values: list[Any] = []
            for row in islice(pending, count):
                values.extend(row[:5])
                values.append(sqlite_time(row[5]) if sqlite else row[5])
            await connection.exec_driver_sql(_insert_sql(count, dialect.paramstyle), tuple(values))

    async def enqueue(self, organizations: set[str], events: Iterable[RecordedEvent]) -> int:
        """The outbox for writers that bulk-insert event rows instead of calling ``record``:
        call it with the inserted events (of ``organizations``) before committing them, and the
        deliveries they owe join the same transaction. Returns the deliveries added.

        One query when no endpoint of ``organizations`` is active, the common case: ``events``
        is then never iterated, so a lazy one costs nothing (batches run to thousands of rows).
        """
        if not organizations:
            return 0
        subscriptions = await self._subscriptions(organizations)
        if not subscriptions:
            return 0
        wanted = [(e, ids) for e in events if (ids := outbox.subscribers(subscriptions, e))]
        if not wanted:
            return 0
        found = await self.session.execute(
            select(Connection).where(Connection.id.in_({e.connection_id for e, _ in wanted}))
        )
        connections = {connection.id: connection for connection in found.scalars()}
        end_users = await self._end_users({c.user_id for c in connections.values()})
        added = [
            delivery
            for recorded, endpoint_ids in wanted
            if (connection := connections.get(recorded.connection_id)) is not None
            for delivery in outbox.deliveries(
                recorded, connection, endpoint_ids, end_users.get(connection.user_id)
            )
        ]
        self.session.add_all(added)
        return len(added)

    async def enqueue_rows(self, rows: Sequence[Mapping[str, Any]]) -> int:
        """``enqueue`` for inserted rows' values (``event_row``'s)."""
        organizations = {row["organization_id"] for row in rows}
        return await self.enqueue(organizations, (RecordedEvent(**row) for row in rows))

    async def _end_users(self, user_ids: set[str]) -> dict[str, str]:
        """The platform's end user id of each of ``user_ids`` that is an end user's internal
        user (SPEC §8), for the payloads."""
        statement = (
            select(EndUser.user_id, EndUser.external_id)
            .where(EndUser.user_id.in_(sorted(user_ids)))
            .execution_options(autoflush=False)
        )
        return {user_id: external for user_id, external in await self.session.execute(statement)}

    async def _subscriptions(self, organizations: set[str]) -> Subscriptions:
        statement = (
            select(WebhookEndpoint.id, WebhookEndpoint.organization_id, WebhookEndpoint.event_types)
            .where(
                WebhookEndpoint.organization_id.in_(organizations),
                WebhookEndpoint.is_active.is_(True),
            )
            # Nothing pending needs writing first: the endpoints are not what this transaction
            # changes.
            .execution_options(autoflush=False)
        )
        rows = (await self.session.execute(statement)).all()
        return outbox.by_organization(rows)

    async def newest(
        self,
        *,
        organization_id: str | None = None,
        connection_id: str | None = None,
        event_type: str | None = None,
        since: datetime | None = None,
        limit: int = 50,
    ) -> Sequence[ConnectionEvent]:
        """Every event row, whoever wrote it, newest first."""
        statement = select(ConnectionEvent)
        if organization_id is not None:
            statement = statement.where(ConnectionEvent.organization_id == organization_id)
        if connection_id is not None:
            statement = statement.where(ConnectionEvent.connection_id == connection_id)
        if event_type is not None:
            statement = statement.where(ConnectionEvent.type == event_type)
        if since is not None:
            statement = statement.where(ConnectionEvent.created_at >= since)
        statement = statement.order_by(
            ConnectionEvent.created_at.desc(), ConnectionEvent.id.desc()
        ).limit(limit)
        return (await self.session.execute(statement)).scalars().all()

    async def delete_oldest(
        self,
        event_type: str,
        before: datetime,
        limit: int,
        organization_id: str | None = None,
    ) -> int:
        """Delete at most ``limit`` of the oldest ``event_type`` events recorded before
        ``before`` (of one organization, or all), except those a webhook delivery still pending
        refers to; the number deleted. One statement, on the ``(type, created_at)`` index."""
        pending = exists().where(
            WebhookDelivery.event_id == ConnectionEvent.id,
            WebhookDelivery.status == DeliveryStatus.PENDING,
        )
        oldest = select(ConnectionEvent.id).where(
            ConnectionEvent.type == event_type, ConnectionEvent.created_at < before, ~pending
        )
        if organization_id is not None:
            oldest = oldest.where(ConnectionEvent.organization_id == organization_id)
        oldest = oldest.order_by(ConnectionEvent.created_at).limit(limit)
        statement = delete(ConnectionEvent).where(ConnectionEvent.id.in_(oldest))
        result = await self.session.execute(statement.execution_options(synchronize_session=False))
        return cast(CursorResult[Any], result).rowcount

    async def delete_finished_deliveries(
        self, before: datetime, limit: int, organization_id: str | None = None
    ) -> int:
        """Delete at most ``limit`` webhook deliveries that succeeded or failed for good and
        were last attempted before ``before``; never a pending one. One statement per status,
        on the ``(status, next_attempt_at)`` index."""
        deleted = 0
        for status in (DeliveryStatus.SUCCEEDED, DeliveryStatus.FAILED):
            oldest = select(WebhookDelivery.id).where(
                WebhookDelivery.status == status, WebhookDelivery.next_attempt_at < before
            )
            if organization_id is not None:
                oldest = oldest.where(WebhookDelivery.organization_id == organization_id)
            oldest = oldest.order_by(WebhookDelivery.next_attempt_at).limit(limit - deleted)
            statement = delete(WebhookDelivery).where(WebhookDelivery.id.in_(oldest))
            result = await self.session.execute(
                statement.execution_options(synchronize_session=False)
            )
            deleted += cast(CursorResult[Any], result).rowcount
            if deleted >= limit:
                break
        return deleted


class KeyUseRepository:
    """``api_keys.last_used_at`` (``events.key_use``): stamped, never moved back."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def stamp(self, uses: Mapping[str, datetime]) -> None:
        # The table, not the mapped class: a plain executemany, not an ORM bulk update.
        table = cast(Table, APIKey.__table__)
        statement = (
            update(table)
            .where(
                table.c.id == bindparam("key_id"),
                or_(table.c.last_used_at.is_(None), table.c.last_used_at < bindparam("at")),
            )
            .values(last_used_at=bindparam("at"))
        )
        await self.session.execute(
            statement, [{"key_id": key_id, "at": at} for key_id, at in sorted(uses.items())]
        )
