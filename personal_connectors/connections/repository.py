"""Database access for connections (their audit trail is ``events.repository``'s)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import undefer

from personal_connectors.models import Connection, EndUser

# Connections as the API shows them: with their end user's id (a deferred column).
_SHOWN = select(Connection).options(undefer(Connection.end_user_id))


class ConnectionRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get_owned(
        self, connection_id: str, user_id: str, organization_id: str | None = None
    ) -> Connection | None:
        """The caller's live connection; anything else (foreign, deleted, unknown) is None."""
        statement = _SHOWN.where(
            Connection.id == connection_id,
            Connection.user_id == user_id,
            Connection.deleted_at.is_(None),
        )
        if organization_id is not None:
            statement = statement.where(Connection.organization_id == organization_id)
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def find_live_account(
        self, organization_id: str, user_id: str, app_key: str, account_id: str
    ) -> Connection | None:
        statement = select(Connection).where(
            Connection.organization_id == organization_id,
            Connection.user_id == user_id,
            Connection.app_key == app_key,
            Connection.account_id == account_id,
            Connection.deleted_at.is_(None),
        )
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def list_owned(
        self,
        organization_id: str,
        user_id: str,
        *,
        app_key: str | None = None,
        status: str | None = None,
    ) -> Sequence[Connection]:
        statement = _SHOWN.where(
            Connection.organization_id == organization_id,
            Connection.user_id == user_id,
            Connection.deleted_at.is_(None),
        )
        return await self._listed(statement, app_key, status)

    async def list_of_end_users(
        self, organization_id: str, *, app_key: str | None = None, status: str | None = None
    ) -> Sequence[Connection]:
        """Every end user's live connections in the organization (never a member's)."""
        statement = _SHOWN.join(EndUser, EndUser.user_id == Connection.user_id).where(
            Connection.organization_id == organization_id,
            EndUser.organization_id == organization_id,
            Connection.deleted_at.is_(None),
        )
        return await self._listed(statement, app_key, status)

    async def get_of_end_users(self, connection_id: str, organization_id: str) -> Connection | None:
        """An end user's live connection in the organization; a member's is None."""
        statement = _SHOWN.join(EndUser, EndUser.user_id == Connection.user_id).where(
            Connection.id == connection_id,
            Connection.organization_id == organization_id,
            EndUser.organization_id == organization_id,
            Connection.deleted_at.is_(None),
        )
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def live_of_user(self, organization_id: str, user_id: str) -> Sequence[Connection]:
        """A user's live connections in the organization, for deleting them all."""
        return await self.list_owned(organization_id, user_id)

    async def _listed(
        self, statement: Select[Connection], app_key: str | None, status: str | None
    ) -> Sequence[Connection]:
        if app_key is not None:
            statement = statement.where(Connection.app_key == app_key)
        if status is not None:
            statement = statement.where(Connection.status == status)
        statement = statement.order_by(Connection.created_at.desc(), Connection.id.desc())
        return (await self.session.execute(statement)).scalars().all()

    async def list_all(
        self, organization_id: str | None = None, user_id: str | None = None
    ) -> Sequence[Connection]:
        statement = _SHOWN.where(Connection.deleted_at.is_(None))
        if organization_id is not None:
            statement = statement.where(Connection.organization_id == organization_id)
        if user_id is not None:
            statement = statement.where(Connection.user_id == user_id)
        return (
            (await self.session.execute(statement.order_by(Connection.created_at.desc())))
            .scalars()
            .all()
        )

    async def live_of_accounts(
        self, organization_id: str, account_ids: set[str]
    ) -> Sequence[Connection]:
        """The organization's live connections of any of ``account_ids`` (whatever provider)."""
        statement = select(Connection).where(
            Connection.organization_id == organization_id,
            Connection.account_id.in_(sorted(account_ids)),
            Connection.deleted_at.is_(None),
        )
        return (await self.session.execute(statement)).scalars().all()

    async def count_live(self, organization_id: str) -> int:
        statement = (
            select(func.count())
            .select_from(Connection)
            .where(Connection.organization_id == organization_id, Connection.deleted_at.is_(None))
        )
        return int((await self.session.execute(statement)).scalar_one())

    async def stream_live(self, organization_id: str, rows: int) -> AsyncIterator[Connection]:
        """The organization's live connections, oldest first, fetched ``rows`` at a time."""
        statement = (
            select(Connection)
            .where(Connection.organization_id == organization_id, Connection.deleted_at.is_(None))
            .order_by(Connection.created_at, Connection.id)
            .execution_options(yield_per=rows)
        )
        async for connection in await self.session.stream_scalars(statement):
            yield connection

    def add(self, connection: Connection) -> None:
        self.session.add(connection)
