"""Database access for connections (their audit trail is ``events.repository``'s)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from sqlalchemy import ColumnElement, and_, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import undefer

from personal_connectors.models import Connection, EndUser
from personal_connectors.storage.paging import Page, PageRequest, read_page

# Connections as the API shows them: with their end user's id (a deferred column).
_SHOWN = select(Connection).options(undefer(Connection.end_user_id))


@dataclass(frozen=True)
class ListFilters:
    """What a connection list is narrowed to; every given filter must hold."""

    app_key: str | None = None
    status: str | None = None
    tags: tuple[tuple[str, str], ...] = ()  # (key, value) pairs, all must match


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

    async def get_owned_locked(
        self, connection_id: str, user_id: str, organization_id: str
    ) -> Connection | None:
        """``get_owned``, its row held until the transaction ends and read after any change
        that held it before, so a read-modify-write (a merge patch) never loses a concurrent one.

        PostgreSQL locks the row (``FOR UPDATE``). SQLite has no row locks but one writer at a
        time: a write that changes nothing takes that lock first (another writer is waited for
        up to the busy timeout), then the row is read.
        """
        if self.session.get_bind().dialect.name == "sqlite":
            await self.session.execute(
                update(Connection)
                .where(Connection.id == connection_id)
                .values(updated_at=Connection.updated_at)
                .execution_options(synchronize_session=False)
            )
        statement = (
            _SHOWN.where(
                Connection.id == connection_id,
                Connection.user_id == user_id,
                Connection.organization_id == organization_id,
                Connection.deleted_at.is_(None),
            )
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def find_live_account(
        self,
        organization_id: str,
        user_id: str,
        app_key: str,
        account_id: str,
        mcp_server_url: str | None = None,
    ) -> Connection | None:
        """The user's live connection of that account (at that custom MCP server, if named)."""
        statement = select(Connection).where(
            Connection.organization_id == organization_id,
            Connection.user_id == user_id,
            Connection.app_key == app_key,
            Connection.account_id == account_id,
            Connection.mcp_server_url.is_(None)
            if mcp_server_url is None
            else Connection.mcp_server_url == mcp_server_url,
            Connection.deleted_at.is_(None),
        )
        return (await self.session.execute(statement)).scalar_one_or_none()

    @staticmethod
    def owned_by(organization_id: str, user_id: str) -> ColumnElement[bool]:
        """The ownership condition of a member's own connections in an organization, for
        ``list_page``; other callers (a service key's end users) bring their own."""
        return and_(Connection.organization_id == organization_id, Connection.user_id == user_id)

    @staticmethod
    def owned_by_end_users(organization_id: str) -> ColumnElement[bool]:
        """The ownership condition of every end user's connections in an organization (a
        service key naming no end user), never a member's own."""
        end_users = select(EndUser.user_id).where(EndUser.organization_id == organization_id)
        return and_(
            Connection.organization_id == organization_id, Connection.user_id.in_(end_users)
        )

    async def get_of_end_users(self, connection_id: str, organization_id: str) -> Connection | None:
        """An end user's live connection in the organization; a member's is None."""
        statement = _SHOWN.where(
            Connection.id == connection_id,
            self.owned_by_end_users(organization_id),
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
        """Every one of the caller's live connections, newest first (no paging)."""
        owner = self.owned_by(organization_id, user_id)
        return (await self.list_page(owner, ListFilters(app_key, status))).items

    async def list_page(
        self,
        owner: ColumnElement[bool],
        filters: ListFilters,
        page: PageRequest | None = None,
    ) -> Page[Connection]:
        """The live connections ``owner`` admits, filtered (every tag pair must match), newest
        first: one page of them when ``page`` is given, else all (``storage.paging``)."""
        statement = _SHOWN.where(owner, Connection.deleted_at.is_(None))
        if filters.app_key is not None:
            statement = statement.where(Connection.app_key == filters.app_key)
        if filters.status is not None:
            statement = statement.where(Connection.status == filters.status)
        for key, value in filters.tags:
            # JSON_EXTRACT on SQLite, ->> on PostgreSQL; keys are checked (tags.TAG_KEY_PATTERN)
            # to be plain enough for either path syntax.
            statement = statement.where(Connection.tags[key].as_string() == value)
        return await read_page(self.session, statement, Connection.created_at, Connection.id, page)

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
            _SHOWN.where(
                Connection.organization_id == organization_id, Connection.deleted_at.is_(None)
            )
            .order_by(Connection.created_at, Connection.id)
            .execution_options(yield_per=rows)
        )
        async for connection in await self.session.stream_scalars(statement):
            yield connection

    def add(self, connection: Connection) -> None:
        self.session.add(connection)
