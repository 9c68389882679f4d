"""Database access for flows. Claims are conditional updates, so each step happens once."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from personal_connectors.models import Flow, FlowStatus, utcnow


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

    async def pending_of(self, flow_ids: list[str], app_keys: list[str]) -> Sequence[Flow]:
        """The pending, unexpired flows among ``flow_ids`` of the connectors ``app_keys``."""
        statement = select(Flow).where(
            Flow.id.in_(flow_ids),
            Flow.status == FlowStatus.PENDING,
            Flow.expires_at > utcnow(),
            Flow.app_key.in_(app_keys),
        )
        return (await self.session.execute(statement)).scalars().all()

    async def by_launch_hash(self, digest: str) -> Flow | None:
        statement = select(Flow).where(Flow.launch_hash == digest)
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def bind_launched(self, flow: Flow, launch_hash: str, binding_hash: str) -> bool:
        """Bind a pending flow to the browser that opened its launch URL, and commit; True for
        the one opener whose conditional update won."""
        result = await self.session.execute(
            update(Flow)
            .where(
                Flow.id == flow.id,
                Flow.launch_hash == launch_hash,
                Flow.status == FlowStatus.PENDING,
            )
            .values(launch_hash=None, launch_url_ct=None, binding_hash=binding_hash)
            .execution_options(synchronize_session=False)
        )
        await self.session.commit()
        return bool(getattr(result, "rowcount", 0) == 1)

    def add(self, flow: Flow) -> None:
        self.session.add(flow)

    async def purge_created_before(self, cutoff: datetime) -> None:
        await self.session.execute(delete(Flow).where(Flow.created_at < cutoff))
