"""Database access for end users (their lookup by the platform's id is ``IdentityRepository``'s,
which authenticating a service key's request uses too)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from personal_connectors.models import Connection, EndUser, User
from personal_connectors.storage.paging import Page, PageRequest, read_page


class EndUserRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def page(self, organization_id: str, page: PageRequest) -> Page[EndUser]:
        """One page of the organization's end users, newest first (``created_at``, then ``id``,
        both descending), as ``GET /`` pages connections (``storage.paging``)."""
        statement = select(EndUser).where(EndUser.organization_id == organization_id)
        return await read_page(self.session, statement, EndUser.created_at, EndUser.id, page)

    async def connection_counts(
        self, organization_id: str, user_ids: Sequence[str]
    ) -> dict[str, int]:
        """Live connections in the organization per internal user (absent: none)."""
        statement = (
            select(Connection.user_id, func.count())
            .where(
                Connection.organization_id == organization_id,
                Connection.user_id.in_(list(user_ids)),
                Connection.deleted_at.is_(None),
            )
            .group_by(Connection.user_id)
        )
        return {user_id: int(count) for user_id, count in await self.session.execute(statement)}

    async def delete_with_user(self, end_user: EndUser) -> None:
        """The end user and its internal user; the database cascades to everything the user
        owned (membership, connections, flows, connect sessions)."""
        await self.session.execute(delete(User).where(User.id == end_user.user_id))
