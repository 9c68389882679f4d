"""Database access for OAuth apps."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from personal_connectors.models import Connection, McpClientRegistration, OAuthApp


class OAuthAppRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, organization_id: str | None, app_key: str) -> OAuthApp | None:
        org_clause = (
            OAuthApp.organization_id.is_(None)
            if organization_id is None
            else OAuthApp.organization_id == organization_id
        )
        statement = select(OAuthApp).where(org_clause, OAuthApp.app_key == app_key)
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def get_by_id(self, app_id: str) -> OAuthApp | None:
        return await self.session.get(OAuthApp, app_id)

    async def visible_to(self, organization_id: str) -> Sequence[OAuthApp]:
        """The organization's own apps and the service-wide ones."""
        statement = select(OAuthApp).where(
            or_(OAuthApp.organization_id == organization_id, OAuthApp.organization_id.is_(None))
        )
        return (await self.session.execute(statement)).scalars().all()

    async def every(self) -> Sequence[OAuthApp]:
        """Every app, service-wide and per organization (the operator's view)."""
        statement = select(OAuthApp).order_by(
            OAuthApp.app_key, OAuthApp.organization_id.is_not(None), OAuthApp.organization_id
        )
        return (await self.session.execute(statement)).scalars().all()

    def add(self, app: OAuthApp) -> None:
        self.session.add(app)

    async def delete(self, app: OAuthApp) -> None:
        await self.session.delete(app)


class McpRegistrationRepository:
    """The service's client registrations at MCP servers' authorization servers."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def for_server(
        self, organization_id: str, server_url: str
    ) -> McpClientRegistration | None:
        statement = select(McpClientRegistration).where(
            McpClientRegistration.organization_id == organization_id,
            McpClientRegistration.server_url == server_url,
        )
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def bound_of(self, organization_id: str) -> Sequence[McpClientRegistration]:
        """The apps administrators bound to MCP servers in the organization, by server URL."""
        statement = (
            select(McpClientRegistration)
            .where(
                McpClientRegistration.organization_id == organization_id,
                McpClientRegistration.bound.is_(True),
            )
            .order_by(McpClientRegistration.server_url)
        )
        return (await self.session.execute(statement)).scalars().all()

    async def get_by_id(self, registration_id: str) -> McpClientRegistration | None:
        return await self.session.get(McpClientRegistration, registration_id)

    def add(self, registration: McpClientRegistration) -> None:
        self.session.add(registration)

    async def delete(self, registration: McpClientRegistration) -> None:
        await self.session.delete(registration)
        await self.session.flush()  # gone before a new row for the same server is added

    async def connections_using(self, registration_id: str) -> int:
        """How many live connections hold tokens issued to this registration's client."""
        statement = select(func.count()).where(
            Connection.mcp_registration_id == registration_id, Connection.deleted_at.is_(None)
        )
        return int((await self.session.execute(statement)).scalar_one())
