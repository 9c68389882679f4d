"""Database access for the token hot path: the caller's key, their membership and the
connection, in one statement.

Every tool call asks for a token first, so this is the service's busiest read. Outer joins from
the key row answer the three checks at once; a missing membership or connection comes back as
NULLs, so every refusal stays as precise as separate checks would make it. The statement is
plain SQL run on the driver (``storage.driver``), its columns converted here as the models'
column types would: SQLAlchemy's execution layer and ORM instances cost several times the read
itself on this path (bench/RESULTS.md). The rows come back as the records of ``tokens.records``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from personal_connectors.identity.records import KeyRecord
from personal_connectors.storage.driver import HotReader, PostgresReader, SQLiteReader
from personal_connectors.tokens.records import ConnectionRecord


@dataclass(frozen=True)
class TokenLookup:
    """What one query found for a key hash, an organization and a connection id."""

    key: KeyRecord
    role: str | None  # the key's user's role in the organization; None: not a member
    connection: ConnectionRecord | None  # the user's live connection; None: not theirs/unknown


def _lookup_sql(key_hash: str, organization_id: str, connection_id: str) -> str:
    """The lookup with the given SQL expressions (placeholders or columns, constants only) for
    its three values."""
    columns = ", ".join(
        [f"api_keys.{name}" for name in KeyRecord._fields]
        + ["memberships.role"]
        + [f"connections.{name} AS connection_{name}" for name in ConnectionRecord._fields]
    )
    return (
        f"SELECT {columns} FROM api_keys"  # noqa: S608
        " LEFT OUTER JOIN memberships ON memberships.user_id = api_keys.user_id"
        f" AND memberships.organization_id = {organization_id}"
        f" LEFT OUTER JOIN connections ON connections.id = {connection_id}"
        " AND connections.user_id = api_keys.user_id"
        f" AND connections.organization_id = {organization_id}"
        " AND connections.deleted_at IS NULL"
        f" WHERE api_keys.key_hash = {key_hash}"
    )


SQLITE_LOOKUP = _lookup_sql(":key_hash", ":organization_id", ":connection_id")
POSTGRES_LOOKUP = _lookup_sql("$1", "$2", "$3")
# The lookup for many parameter sets at once, each row led by its set's position. LATERAL runs
# it once per set, planned as the single lookup is (primary-key and unique-index probes).
POSTGRES_LOOKUPS = (
    "SELECT sets.position, found.* FROM unnest($1::text[], $2::text[], $3::text[])"  # noqa: S608
    " WITH ORDINALITY AS sets(key_hash, organization_id, connection_id, position)"
    " CROSS JOIN LATERAL ("
    + _lookup_sql("sets.key_hash", "sets.organization_id", "sets.connection_id")
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


# Per column of a record, the conversion of the driver's value (None: none needed).
_KEY_FORMS = tuple({"expires_at": _utc}.get(name) for name in KeyRecord._fields)
_CONNECTION_FORMS = tuple(
    {
        "is_active": bool,
        "scopes": _json,
        "provider_metadata": _json,
        "access_token_ct": _bytes,
        "expires_at": _utc,
    }.get(name)
    for name in ConnectionRecord._fields
)


def _converted(forms: tuple[Any, ...], values: tuple[Any, ...]) -> list[Any]:
    return [
        value if form is None or value is None else form(value)
        for form, value in zip(forms, values, strict=True)
    ]


def _found(row: tuple[Any, ...]) -> TokenLookup:
    keys = len(KeyRecord._fields)
    key = KeyRecord(*_converted(_KEY_FORMS, row[:keys]))
    connection = row[keys + 1 :]
    return TokenLookup(
        key,
        row[keys],
        None
        if connection[0] is None
        else ConnectionRecord(*_converted(_CONNECTION_FORMS, connection)),
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
        self, key_hash: str, organization_id: str, connection_id: str
    ) -> TokenLookup | None:
        """None when no key has that hash. The connection must belong to the key's user, in the
        organization, and not be deleted: the same rule as ``ConnectionRepository.get_owned``."""
        row: tuple[Any, ...] | None
        if isinstance(self.reader, PostgresReader):
            arguments = (key_hash, organization_id, connection_id)
            row = await self.reader.fetch_row(POSTGRES_LOOKUP, POSTGRES_LOOKUPS, arguments)
        else:
            parameters = {
                "key_hash": key_hash,
                "organization_id": organization_id,
                "connection_id": connection_id,
            }
            if isinstance(self.reader, SQLiteReader):
                row = self.reader.fetch_row(SQLITE_LOOKUP, parameters)
            else:
                async with self.sessions() as session:
                    connection = await session.connection()
                    found = await connection.exec_driver_sql(SQLITE_LOOKUP, parameters)
                    row = found.first()
        return None if row is None else _found(tuple(row))
