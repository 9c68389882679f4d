"""Database access for the token hot path: the caller's key, their membership (or, for a
service key, the end user it names) and the connection, in one statement.

Every tool call asks for a token first, so this is the service's busiest read. Outer joins from
the key row answer the three checks at once; a missing membership or connection comes back as
NULLs, so every refusal stays as precise as separate checks would make it. The statement is
plain SQL run on the driver (``storage.driver``), its columns converted here as the models'
column types would: SQLAlchemy's execution layer and ORM instances cost several times the read
itself on this path (bench/RESULTS.md). The rows come back as the records of ``tokens.records``.

The compare-and-swap write that stores a refreshed grant (``write_tokens``) is here too, apart
from the refresh's orchestration (``tokens.refresh``); the lease's statements are in
``tokens.lease``.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import ARRAY, Table, Update, any_, bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker

from personal_connectors.events.repository import EventRepository
from personal_connectors.identity.records import KeyRecord
from personal_connectors.models import Connection, ConnectionEvent
from personal_connectors.storage.driver import HotReader, PostgresReader, SQLiteReader
from personal_connectors.tokens.records import ConnectionLike, ConnectionRecord


@dataclass(frozen=True)
class TokenLookup:
    """What one query found for a key hash, an organization and a connection id."""

    key: KeyRecord
    role: str | None  # the key's user's role in the organization; None: not a member
    # A service key's end user's internal user; None: not a service key, or no such end user.
    end_user_user_id: str | None
    connection: ConnectionRecord | None  # the user's live connection; None: not theirs/unknown


def _lookup_sql(key_hash: str, organization_id: str, connection_id: str, end_user_id: str) -> str:
    """The lookup with the given SQL expressions (placeholders or columns, constants only) for
    its four values. The connection's owner is the end user a service key names (in its own
    organization), else the key's user; a NULL ``end_user_id`` joins no end user."""
    columns = ", ".join(
        [f"api_keys.{name}" for name in KeyRecord._fields]
        + ["memberships.role", "end_users.user_id AS end_user_user_id"]
        + [f"connections.{name} AS connection_{name}" for name in ConnectionRecord._fields]
    )
    return (
        f"SELECT {columns} FROM api_keys"  # noqa: S608
        " LEFT OUTER JOIN memberships ON memberships.user_id = api_keys.user_id"
        f" AND memberships.organization_id = {organization_id}"
        " LEFT OUTER JOIN end_users ON api_keys.kind = 'service'"
        " AND end_users.organization_id = api_keys.organization_id"
        f" AND end_users.organization_id = {organization_id}"
        f" AND end_users.external_id = {end_user_id}"
        f" LEFT OUTER JOIN connections ON connections.id = {connection_id}"
        " AND connections.user_id = COALESCE(end_users.user_id, api_keys.user_id)"
        f" AND connections.organization_id = {organization_id}"
        " AND connections.deleted_at IS NULL"
        f" WHERE api_keys.key_hash = {key_hash}"
    )


SQLITE_LOOKUP = _lookup_sql(":key_hash", ":organization_id", ":connection_id", ":end_user_id")
POSTGRES_LOOKUP = _lookup_sql("$1", "$2", "$3", "$4")
# The lookup for many parameter sets at once, each row led by its set's position. LATERAL runs
# it once per set, planned as the single lookup is (primary-key and unique-index probes).
POSTGRES_LOOKUPS = (
    "SELECT sets.position, found.* FROM"
    " unnest($1::text[], $2::text[], $3::text[], $4::text[])"
    " WITH ORDINALITY AS sets(key_hash, organization_id, connection_id, end_user_id, position)"
    " CROSS JOIN LATERAL ("
    + _lookup_sql("sets.key_hash", "sets.organization_id", "sets.connection_id", "sets.end_user_id")
    + ") AS found"
)


def _utc(value: datetime | str | None) -> datetime | None:
    """As ``models.base.UTCDateTime`` reads it: SQLite stores naive UTC text."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _json(value: str | None) -> Any:
    return None if value is None else json.loads(value)


def _bytes(value: bytes | memoryview | None) -> bytes | None:
    return None if value is None else bytes(value)


Form = Callable[[Any], Any]


def _forms(fields: tuple[str, ...], by_name: dict[str, Form]) -> tuple[tuple[int, Form], ...]:
    """The columns of a record whose driver value needs converting, by position, and how."""
    return tuple((index, by_name[name]) for index, name in enumerate(fields) if name in by_name)


_KEY_FORMS = _forms(KeyRecord._fields, {"expires_at": _utc})
_CONNECTION_FORMS = _forms(
    ConnectionRecord._fields,
    {
        "is_active": bool,
        "scopes": _json,
        "provider_metadata": _json,
        "access_token_ct": _bytes,
        "expires_at": _utc,
        "token_issued_at": _utc,
        "tools_enabled": bool,
        "allowed_tools": _json,
    },
)
_KEY_COLUMNS = len(KeyRecord._fields)


def _converted(forms: tuple[tuple[int, Form], ...], values: list[Any]) -> list[Any]:
    for index, form in forms:
        value = values[index]
        if value is not None:
            values[index] = form(value)
    return values


# A connection's record's columns, for other plain reads of connections (``mcp_servers``).
CONNECTION_COLUMNS = ", ".join(f"connections.{name}" for name in ConnectionRecord._fields)


def connection_record(values: Sequence[Any]) -> ConnectionRecord:
    """The record of the driver's values of ``CONNECTION_COLUMNS``."""
    return ConnectionRecord._make(_converted(_CONNECTION_FORMS, list(values)))


def _found(row: tuple[Any, ...]) -> TokenLookup:
    connection = row[_KEY_COLUMNS + 2 :]
    return TokenLookup(
        KeyRecord._make(_converted(_KEY_FORMS, list(row[:_KEY_COLUMNS]))),
        row[_KEY_COLUMNS],
        row[_KEY_COLUMNS + 1],
        None if connection[0] is None else connection_record(connection),
    )


class TokenRepository:
    """Runs the lookup on the runtime's reader (``storage.driver.create_hot_reader``) or,
    without one (an in-memory SQLite database), on a short session of its own."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], reader: HotReader | None
    ) -> None:
        self.sessions = sessions
        self.reader = reader

    async def lookup(
        self,
        key_hash: str,
        organization_id: str,
        connection_id: str,
        end_user_id: str | None = None,
    ) -> TokenLookup | None:
        """None when no key has that hash. The connection must belong to the key's user (a
        service key: to the end user ``end_user_id``), in the organization, and not be deleted:
        the same rule as ``ConnectionRepository.get_owned``."""
        row: tuple[Any, ...] | None
        if isinstance(self.reader, PostgresReader):
            arguments = (key_hash, organization_id, connection_id, end_user_id)
            row = await self.reader.fetch_row(POSTGRES_LOOKUP, POSTGRES_LOOKUPS, arguments)
        else:
            parameters = {
                "key_hash": key_hash,
                "organization_id": organization_id,
                "connection_id": connection_id,
                "end_user_id": end_user_id,
            }
            if isinstance(self.reader, SQLiteReader):
                row = self.reader.fetch_row(SQLITE_LOOKUP, parameters)
            else:
                async with self.sessions() as session:
                    connection = await session.connection()
                    found = await connection.exec_driver_sql(SQLITE_LOOKUP, parameters)
                    row = found.first()
        return None if row is None else _found(tuple(row))

    @staticmethod
    async def owned(
        session: AsyncSession, connection_id: str, user_id: str, organization_id: str
    ) -> Connection | None:
        """The user's live connection in the organization (the token lookup's rule)."""
        statement = select(Connection).where(
            Connection.id == connection_id,
            Connection.user_id == user_id,
            Connection.organization_id == organization_id,
            Connection.deleted_at.is_(None),
        )
        return (await session.scalars(statement)).one_or_none()

    @staticmethod
    async def row_of(session: AsyncSession, found: ConnectionLike) -> Connection | None:
        """The whole row of a connection the lookup found (its credentials fields, its
        integration params), if it is still the owner's and live; a row is itself."""
        if isinstance(found, Connection):
            return found
        return await TokenRepository.owned(session, found.id, found.user_id, found.organization_id)

    @staticmethod
    async def credentials_of(
        sessions: async_sessionmaker[AsyncSession], connection_id: str
    ) -> tuple[str, bytes] | None:
        """A credentials connection's key id and sealed fields (SPEC §10), read apart from the
        lookup so that an OAuth connection's token costs no more for their existence."""
        statement = select(Connection.key_id, Connection.credentials_ct).where(
            Connection.id == connection_id, Connection.deleted_at.is_(None)
        )
        async with sessions() as session:
            row = (await session.execute(statement)).one_or_none()
        if row is None or row.credentials_ct is None:
            return None
        return row.key_id, bytes(row.credentials_ct)


# --- Storing refreshed grants (tokens.refresh, refresher.writes) ------------------------------


@dataclass(frozen=True)
class TokenWrite:
    """A refreshed grant to store: one row's compare-and-swap update and its audit events."""

    connection_id: str
    version: int  # the version the refresh read; the write happens only over it
    owner: str  # the lease the refresh ran under; the write releases it
    values: Mapping[str, Any]
    events: Sequence[Mapping[str, Any]]  # connection_events rows (never a token)


async def write_tokens(session: AsyncSession, writes: Sequence[TokenWrite]) -> list[bool]:
    """Store ``writes`` in one transaction on ``session`` and commit; per write, whether it won.

    Each row is written only over the version its refresh read and only under its lease, so a
    write that lost (possible only once a lease expired mid-refresh) changes nothing; the events
    of the writes that won are inserted with them, and their webhook deliveries join the same
    transaction (``EventRepository.enqueue_rows``). Core statements built once: no unit of work
    is needed, and the ORM's per-statement overhead is a large share of a background refresh.
    """
    if not writes:
        return []
    connection = await session.connection()
    statement = _compare_and_swap(tuple(writes[0].values))
    params = [
        {"cas_id": w.connection_id, "cas_version": w.version, "cas_owner": w.owner, **w.values}
        for w in writes
    ]
    stored: list[bool] | None = None
    if len(params) > 1 and connection.dialect.supports_sane_multi_rowcount:
        # One executemany (SQLite); its total count proves every write won, the usual case.
        if (await connection.execute(statement, params)).rowcount == len(params):
            stored = [True] * len(params)
        else:
            await session.rollback()  # someone lost: redo one by one to learn who
            connection = await session.connection()
    elif len(params) > 1:
        # PostgreSQL (asyncpg reports no per-row counts for an executemany): lock the rows and
        # learn the winners in one statement, then write the winners in one executemany.
        stored = await _lock_unchanged(connection, writes)
        winners = [row for row, won in zip(params, stored, strict=True) if won]
        if winners:
            await connection.execute(statement, winners)
    if stored is None:
        stored = [(await connection.execute(statement, row)).rowcount == 1 for row in params]
    events = [row for write, won in zip(writes, stored, strict=True) if won for row in write.events]
    if events:
        await connection.execute(insert(_EVENTS), events)
        await EventRepository(session).enqueue_rows(events)
    await session.commit()
    return stored


_CONNECTIONS = cast(Table, Connection.__table__)
_EVENTS = cast(Table, ConnectionEvent.__table__)


async def _lock_unchanged(connection: AsyncConnection, writes: Sequence[TokenWrite]) -> list[bool]:
    """Per write, whether its compare-and-swap will win, its row locked until the commit.

    ``SELECT … FOR UPDATE`` waits for a concurrent writer and then reads its committed row, so a
    row still at the version and lease owner the refresh read cannot change before this
    transaction's ``UPDATE`` (which keeps its own compare-and-swap condition all the same). Rows
    are locked in id order, so two batches cannot deadlock; the statement's text does not depend
    on the batch's size (one array parameter), so each connection prepares it once.
    """
    ids = [write.connection_id for write in writes]
    current = {
        row.id: (row.version, row.refresh_lease_owner)
        for row in await connection.execute(_LOCK_ROWS, {"ids": ids})
    }
    won: list[bool] = []
    for write in writes:
        # A second write of one row in a batch would find the first one's version: it loses.
        won.append(current.pop(write.connection_id, None) == (write.version, write.owner))
    return won


_LOCK_ROWS = (
    select(_CONNECTIONS.c.id, _CONNECTIONS.c.version, _CONNECTIONS.c.refresh_lease_owner)
    .where(_CONNECTIONS.c.id == any_(bindparam("ids", type_=ARRAY(_CONNECTIONS.c.id.type))))
    .order_by(_CONNECTIONS.c.id)
    .with_for_update()
)


@functools.cache
def _compare_and_swap(columns: tuple[str, ...]) -> Update:
    """``UPDATE connections SET <columns> WHERE id, version and lease owner are as read``."""
    table = _CONNECTIONS
    return (
        update(table)
        .where(
            table.c.id == bindparam("cas_id"),
            table.c.version == bindparam("cas_version"),
            table.c.refresh_lease_owner == bindparam("cas_owner"),
        )
        .values({name: bindparam(name, type_=table.c[name].type) for name in columns})
    )
