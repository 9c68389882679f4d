"""The catalog seen from one caller in one organization: what is offered, what is set up for
the organization (an OAuth app of its own or the service-wide one), what the caller connected."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from personal_connectors.apps.service import OAuthAppService
from personal_connectors.available.schemas import ConnectorOut
from personal_connectors.connections.repository import ConnectionRepository
from personal_connectors.exceptions import ResourceNotFound, unknown_connector
from personal_connectors.identity.service import OrgAccess
from personal_connectors.providers.catalog import Catalog
from personal_connectors.providers.schema import ProviderEntry
from personal_connectors.runtime import Runtime


def require_entry(catalog: Catalog, tool_key: str) -> ProviderEntry:
    """The catalog entry, or the 404 every ``{tool_key}`` path answers for an unknown one."""
    entry = catalog.get(tool_key)
    if entry is None:
        raise ResourceNotFound(unknown_connector(tool_key, catalog.entries))
    return entry


class CatalogService:
    def __init__(self, session: AsyncSession, runtime: Runtime) -> None:
        self.catalog = runtime.catalog
        self.apps = OAuthAppService(session, runtime.sealer, runtime.catalog)
        self.connections = ConnectionRepository(session)

    async def list_for(self, access: OrgAccess) -> list[ConnectorOut]:
        return await self._describe(access, list(self.catalog))

    async def get_for(self, access: OrgAccess, tool_key: str) -> ConnectorOut:
        entry = require_entry(self.catalog, tool_key)
        [connector] = await self._describe(access, [entry], app_key=tool_key)
        return connector

    async def _describe(
        self, access: OrgAccess, entries: list[ProviderEntry], app_key: str | None = None
    ) -> list[ConnectorOut]:
        configured = await self.apps.configured_keys(access.organization_id)
        newest = await self._newest_connection_ids(access, app_key)
        return [
            ConnectorOut.of(
                entry, configured=entry.key in configured, connection_id=newest.get(entry.key)
            )
            for entry in entries
        ]

    async def _newest_connection_ids(
        self, access: OrgAccess, app_key: str | None
    ) -> dict[str, str]:
        """Per provider, the caller's newest live connection (disabled ones count: they are
        still connected and come back without a new authorization)."""
        owned = await self.connections.list_owned(
            access.organization_id, access.user_id, app_key=app_key
        )
        newest: dict[str, str] = {}
        for connection in owned:  # newest first
            newest.setdefault(connection.app_key, connection.id)
        return newest
