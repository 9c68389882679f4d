"""The connection reads of the MCP gateway: the caller's live connections, or one of them."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from personal_connectors.models import ID_MAX_LENGTH, Connection


class McpRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def live_of(self, user_id: str, organization_id: str) -> Sequence[Connection]:
        """The caller's live connections in the organization, oldest first."""
        statement = (
            select(Connection)
            .where(
                Connection.organization_id == organization_id,
                Connection.user_id == user_id,
                Connection.deleted_at.is_(None),
            )
            .order_by(Connection.created_at, Connection.id)
        )
        return (await self.session.execute(statement)).scalars().all()

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

    async def owned(
        self, connection_id: str, user_id: str, organization_id: str
    ) -> Connection | None:
        """The caller's live connection; anything else (foreign, deleted, unknown) is None."""
        if len(connection_id) > ID_MAX_LENGTH:
            return None
        statement = select(Connection).where(
            Connection.id == connection_id,
            Connection.organization_id == organization_id,
            Connection.user_id == user_id,
            Connection.deleted_at.is_(None),
        )
        return (await self.session.execute(statement)).scalar_one_or_none()
