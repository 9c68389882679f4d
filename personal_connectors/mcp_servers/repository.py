"""The connection reads and writes of the MCP gateway: the caller's live connections and the
tool-name prefixes it stores.

``live_records`` is the read of every gateway request to ``/mcp``; like the token lookup
(``tokens.repository``) it is plain SQL on the driver (``storage.driver``), its rows the token
path's records: building ORM instances of every connection cost more than the read itself.
"""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from personal_connectors.models import Connection
from personal_connectors.storage.driver import HotReader, PostgresReader, SQLiteReader
from personal_connectors.tokens.records import ConnectionRecord
from personal_connectors.tokens.repository import CONNECTION_COLUMNS, connection_record


def _live_sql(organization_id: str, user_id: str) -> str:
    """The read with the given placeholders: the user's live connections, oldest first."""
    return (
        f"SELECT {CONNECTION_COLUMNS} FROM connections"  # noqa: S608 (placeholders only)
        f" WHERE connections.organization_id = {organization_id}"
        f" AND connections.user_id = {user_id} AND connections.deleted_at IS NULL"
        " ORDER BY connections.created_at, connections.id"
    )


SQLITE_LIVE = _live_sql(":organization_id", ":user_id")
POSTGRES_LIVE = _live_sql("$1", "$2")


async def live_records(
    sessions: async_sessionmaker[AsyncSession],
    reader: HotReader | None,
    user_id: str,
    organization_id: str,
) -> list[ConnectionRecord]:
    """The user's live connections in the organization, oldest first, on the runtime's reader
    or, without one (an in-memory database), on a session of its own."""
    if isinstance(reader, PostgresReader):
        rows = await reader.fetch_rows(POSTGRES_LIVE, (organization_id, user_id))
    else:
        parameters: dict[str, str | None] = {"organization_id": organization_id, "user_id": user_id}
        if isinstance(reader, SQLiteReader):
            rows = reader.fetch_rows(SQLITE_LIVE, parameters)
        else:
            async with sessions() as session:
                connection = await session.connection()
                found = await connection.exec_driver_sql(SQLITE_LIVE, parameters)
                rows = [tuple(row) for row in found]
    return [connection_record(row) for row in rows]


class McpRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def keep_prefixes(self, chosen: dict[str, str]) -> dict[str, str]:
        """Store each connection's first tool-name prefix (by id), unless another request
        stored one first; what every one of them holds afterwards."""
        for connection_id, prefix in chosen.items():
            await self.session.execute(
                update(Connection)
                .where(Connection.id == connection_id, Connection.mcp_prefix.is_(None))
                .values(mcp_prefix=prefix)
            )
        statement = select(Connection.id, Connection.mcp_prefix).where(Connection.id.in_(chosen))
        kept = {row.id: row.mcp_prefix for row in await self.session.execute(statement)}
        await self.session.commit()
        return kept
