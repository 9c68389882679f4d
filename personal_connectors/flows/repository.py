"""Database access for flows. Claims are conditional updates, so each step happens once."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from personal_connectors.identity.repository import IdentityRepository
from personal_connectors.models import Flow, FlowStatus, Organization

# Old flows are purged a batch at a time on each /authorize, so one request never carries a
# backlog (the ``created_at`` index finds the batch without scanning the table).
PURGE_BATCH = 100
# The statuses in which complete-oauth has an answer other than "not yet".
FINISHED = (FlowStatus.AUTHORIZED, FlowStatus.COMPLETED, FlowStatus.FAILED)


class FlowRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def by_state_hash(self, digest: str) -> Flow | None:
        statement = select(Flow).where(Flow.state_hash == digest)
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def by_launch_hash(self, digest: str) -> Flow | None:
        statement = select(Flow).where(Flow.launch_hash == digest)
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def by_attempt(self, connect_session_id: str, attempt: str) -> Flow | None:
        statement = (
            select(Flow)
            .where(Flow.connect_session_id == connect_session_id, Flow.connect_attempt == attempt)
            .order_by(Flow.created_at.desc())
            .limit(1)
        )
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def bound_pending(
        self, flow_ids: list[str], app_keys: list[str], now: datetime
    ) -> list[Flow]:
        """Pending, unexpired flows among ``flow_ids`` of the given providers."""
        statement = select(Flow).where(
            Flow.id.in_(flow_ids),
            Flow.status == FlowStatus.PENDING,
            Flow.expires_at > now,
            Flow.app_key.in_(app_keys),
        )
        return list((await self.session.execute(statement)).scalars().all())

    async def finished_among(self, flow_ids: list[str]) -> list[str]:
        """Those of ``flow_ids`` whose callback (or device poll) is over: authorized, completed
        or failed."""
        statement = select(Flow.id).where(Flow.id.in_(flow_ids), Flow.status.in_(FINISHED))
        return list((await self.session.execute(statement)).scalars().all())

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

    async def bind_launched(self, flow_id: str, launch_digest: str, binding_digest: str) -> bool:
        """Trade a launch token for a browser binding, once: True for the one caller that won."""
        result = await self.session.execute(
            update(Flow)
            .where(
                Flow.id == flow_id,
                Flow.launch_hash == launch_digest,
                Flow.status == FlowStatus.PENDING,
            )
            .values(launch_hash=None, launch_url_ct=None, binding_hash=binding_digest)
            .execution_options(synchronize_session=False)
        )
        await self.session.commit()
        return bool(getattr(result, "rowcount", 0) == 1)

    async def pending_of_user(self, user_id: str, now: datetime) -> tuple[int, datetime | None]:
        """How many of the user's flows wait for a callback, and when the first of them ends."""
        statement = select(func.count(), func.min(Flow.expires_at)).where(
            Flow.user_id == user_id, Flow.status == FlowStatus.PENDING, Flow.expires_at > now
        )
        count, first_end = (await self.session.execute(statement)).one()
        return int(count), first_end

    async def requires_launch(self, organization_id: str) -> bool:
        statement = select(Organization.require_launched_flows).where(
            Organization.id == organization_id
        )
        return bool((await self.session.execute(statement)).scalar_one_or_none())

    async def owner_labels(self, flow: Flow) -> tuple[str, str | None, str]:
        """The flow's user (email, name) and organization name, for the launch page."""
        email, name = await IdentityRepository(self.session).user_labels(flow.user_id)
        organization = await self.session.get(Organization, flow.organization_id)
        return email, name, organization.name if organization else ""

    def add(self, flow: Flow) -> None:
        self.session.add(flow)

    async def purge_created_before(self, cutoff: datetime) -> None:
        batch = select(Flow.id).where(Flow.created_at < cutoff).limit(PURGE_BATCH)
        await self.session.execute(
            delete(Flow)
            .where(Flow.id.in_(batch.scalar_subquery()))
            .execution_options(synchronize_session=False)
        )
