"""Database access for flows. Claims are conditional updates, so each step happens once."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from personal_connectors.models import Flow


class FlowRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def by_state_hash(self, digest: str) -> Flow | None:
        statement = select(Flow).where(Flow.state_hash == digest)
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def claim(self, flow: Flow, from_status: str, to_status: str) -> bool:
        """Move the flow on only if nobody else did; True when this caller won."""
        result = await self.session.execute(
            update(Flow)
            .where(Flow.id == flow.id, Flow.status == from_status)
            .values(status=to_status)
            .execution_options(synchronize_session=False)
        )
        await self.session.commit()
        won = bool(getattr(result, "rowcount", 0) == 1)
        await self.session.refresh(flow)
        return won

    def add(self, flow: Flow) -> None:
        self.session.add(flow)

    async def purge_created_before(self, cutoff: datetime) -> None:
        await self.session.execute(delete(Flow).where(Flow.created_at < cutoff))
