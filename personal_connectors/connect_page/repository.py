"""Database access for connect sessions."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from personal_connectors.models import ConnectSession


class ConnectSessionRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def add(self, connect_session: ConnectSession) -> None:
        self.session.add(connect_session)

    async def by_token_hash(self, digest: str) -> ConnectSession | None:
        statement = select(ConnectSession).where(ConnectSession.token_hash == digest)
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def purge_expired_before(self, cutoff: datetime) -> None:
        await self.session.execute(delete(ConnectSession).where(ConnectSession.expires_at < cutoff))
