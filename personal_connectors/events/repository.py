"""Reading the audit trail: every event row, whoever wrote it (``ConnectionRepository.record``,
the batched token-issued writer), newest first."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from personal_connectors.models import ConnectionEvent


class EventRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def newest(
        self,
        *,
        organization_id: str | None = None,
        connection_id: str | None = None,
        event_type: str | None = None,
        since: datetime | None = None,
        limit: int = 50,
    ) -> Sequence[ConnectionEvent]:
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
