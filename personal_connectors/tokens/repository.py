"""Database access for the token hot path: the caller, their membership and the connection in
one round trip.

Every tool call of the platform asks for a token first, so this read is the service's busiest
query. Authenticating the key, checking the membership and finding the connection separately
costs three round trips (and, on SQLite, a dozen hand-offs to the driver's thread); outer joins
from the key row answer all three at once, and a missing membership or connection comes back as
NULLs, so every refusal stays as precise as the separate checks made it.

It reads columns, not entities: loading ``APIKey`` and ``Connection`` through the ORM (identity
map, every column of both rows, a session to open and close) cost about three times the read
(measured on SQLite: 125 µs against 45 µs for the column select, 12 µs on the driver through
the runtime's ``HotReader``). The columns the token path uses come back as the plain records of
``tokens.records``, which the identity and token rules take as they take model instances.

The compare-and-swap write that stores a refreshed grant (``write_tokens``) is here too, apart
from the refresh's orchestration (``tokens.refresh``); the lease's statements are in
``tokens.lease``.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import (
    ARRAY,
    ColumnElement,
    Select,
    Table,
    TableValuedAlias,
    Update,
    and_,
    any_,
    bindparam,
    insert,
    select,
    true,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker
from sqlalchemy.orm import InstrumentedAttribute

from personal_connectors.identity.records import KeyRecord
from personal_connectors.models import APIKey, Connection, ConnectionEvent, Membership
from personal_connectors.storage.hot_reader import (
    PARAMETER_SET_POSITION,
    HotRead,
    HotReader,
    parameter_sets,
)
from personal_connectors.tokens.records import ConnectionRecord
from personal_connectors.webhooks import outbox as webhook_outbox


@dataclass(frozen=True)
class TokenLookup:
    """What one query found for a key hash, an organization and a connection id."""

    key: KeyRecord
    role: str | None  # the key's user's role in the organization; None: not a member
    connection: ConnectionRecord | None  # the user's live connection; None: not theirs/unknown


# The records' fields, in their order, are the columns read.
KEY_COLUMNS: tuple[InstrumentedAttribute[Any], ...] = tuple(
    getattr(APIKey, name) for name in KeyRecord._fields
)
CONNECTION_COLUMNS: tuple[InstrumentedAttribute[Any], ...] = tuple(
    getattr(Connection, name) for name in ConnectionRecord._fields
)
# The connection's id among its columns: NULL when the outer join found no connection.
_CONNECTION_ID = ConnectionRecord._fields.index("id")


def _lookup(
    key_hash: ColumnElement[str],
    organization_id: ColumnElement[str],
    connection_id: ColumnElement[str],
) -> Select[Any]:
    return (
        select(*KEY_COLUMNS, Membership.role, *CONNECTION_COLUMNS)
        .select_from(APIKey)
        .outerjoin(
            Membership,
            and_(
                Membership.user_id == APIKey.user_id,
                Membership.organization_id == organization_id,
            ),
        )
        .outerjoin(
            Connection,
            and_(
                Connection.id == connection_id,
                Connection.user_id == APIKey.user_id,
                Connection.organization_id == organization_id,
                Connection.deleted_at.is_(None),
            ),
        )
        .where(APIKey.key_hash == key_hash)
    )


def _lookup_each(sets: TableValuedAlias) -> Select[Any]:
    """``_lookup`` for every parameter set of ``sets``, the position of the set first.

    LATERAL runs the lookup once per set with that set's values, so each is planned as the
    single lookup is (primary-key and unique-index probes); a plain join of the sets to the
    tables let the planner probe connections by user and filter, a scan of all of a user's
    connections per set."""
    found = _lookup(sets.c.key_hash, sets.c.organization_id, sets.c.connection_id).lateral("found")
    return select(sets.c[PARAMETER_SET_POSITION], *found.c).select_from(sets.join(found, true()))


_SETS = parameter_sets("key_hash", "organization_id", "connection_id")
# Built once: constructing these selects and computing their cache keys cost more CPU than
# running them (about 0.2 ms a request, measured); the hot reader compiles them once per dialect.
_LOOKUP = HotRead(
    one=_lookup(bindparam("key_hash"), bindparam("organization_id"), bindparam("connection_id")),
    many=_lookup_each(_SETS),
)


class TokenRepository:
    """Runs the lookup on the runtime's ``HotReader`` (``storage.hot_reader.create_hot_reader``)
    or, without one (an in-memory SQLite database), on a short session of its own."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], reader: HotReader | None
    ) -> None:
        self.sessions = sessions
        self.reader = reader

    async def lookup(
        self, key_hash: str, organization_id: str, connection_id: str
    ) -> TokenLookup | None:
        """None when no key has that hash. The connection must belong to the key's user, in the
        organization, and not be deleted: the same rule as ``ConnectionRepository.get_owned``."""
        parameters: Mapping[str, str] = {
            "key_hash": key_hash,
            "organization_id": organization_id,
            "connection_id": connection_id,
        }
        row: tuple[Any, ...] | None
        if self.reader is not None:
            row = await self.reader.fetch_one(_LOOKUP, parameters)
        else:
            async with self.sessions() as session:
                found = (await session.execute(_LOOKUP.one, parameters)).one_or_none()
            row = None if found is None else tuple(found)
        if row is None:
            return None
        keys = len(KEY_COLUMNS)
        connection_values = row[keys + 1 :]
        return TokenLookup(
            KeyRecord(*row[:keys]),
            row[keys],
            None
            if connection_values[_CONNECTION_ID] is None
            else ConnectionRecord(*connection_values),
        )


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
    transaction (``webhooks.outbox.enqueue_rows``). Core statements built once: no unit of work
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
        await webhook_outbox.enqueue_rows(session, events)
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
