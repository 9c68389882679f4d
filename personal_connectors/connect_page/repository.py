"""Database access for connect sessions."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from personal_connectors.identity.repository import IdentityRepository
from personal_connectors.models import ConnectSession, Organization


class ConnectSessionRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def add(self, connect_session: ConnectSession) -> None:
        self.session.add(connect_session)

    async def by_token_hash(self, digest: str) -> ConnectSession | None:
        statement = select(ConnectSession).where(ConnectSession.token_hash == digest)
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def live_of_user(self, user_id: str, now: datetime) -> tuple[int, datetime | None]:
        """How many of the user's sessions are still valid, and when the first of them ends."""
        statement = select(func.count(), func.min(ConnectSession.expires_at)).where(
            ConnectSession.user_id == user_id, ConnectSession.expires_at > now
        )
        count, first_end = (await self.session.execute(statement)).one()
        return int(count), first_end

    async def end(self, connect_session: ConnectSession, now: datetime) -> None:
        await self.session.execute(
            update(ConnectSession)
            .where(ConnectSession.id == connect_session.id)
            .values(expires_at=now)
            .execution_options(synchronize_session=False)
        )
        await self.session.commit()

    async def owner_labels(self, connect_session: ConnectSession) -> tuple[str, str | None, str]:
        """The session's user (email, name) and organization name, shown on the page."""
        email, name = await IdentityRepository(self.session).user_labels(connect_session.user_id)
        organization = await self.session.get(Organization, connect_session.organization_id)
        return email, name, organization.name if organization else ""

    async def purge_expired_before(self, cutoff: datetime) -> None:
        await self.session.execute(delete(ConnectSession).where(ConnectSession.expires_at < cutoff))
