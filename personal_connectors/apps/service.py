"""OAuth app logic: which client credentials a flow in an organization uses.

An organization's own app wins over the service-wide one for the same provider.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from personal_connectors.apps.repository import OAuthAppRepository
from personal_connectors.crypto.aead import Sealer, associated_data
from personal_connectors.exceptions import (
    ConnectorNotConfigured,
    ResourceNotFound,
    UnknownConnectorType,
)
from personal_connectors.models import OAuthApp, new_id
from personal_connectors.oauth.client import ClientCredentials
from personal_connectors.providers.catalog import Catalog
from personal_connectors.providers.templating import app_params


@dataclass(frozen=True)
class ResolvedApp:
    app: OAuthApp
    credentials: ClientCredentials


def _aad(app_id: str) -> bytes:
    return associated_data("oauth_apps", app_id, "client_secret")


class OAuthAppService:
    def __init__(self, session: AsyncSession, sealer: Sealer, catalog: Catalog) -> None:
        self.session = session
        self.sealer = sealer
        self.catalog = catalog
        self.repository = OAuthAppRepository(session)

    async def configure(
        self,
        organization_id: str | None,
        app_key: str,
        *,
        client_id: str,
        client_secret: str,
        scopes: list[str] | None = None,
        integration_params: Mapping[str, object] | None = None,
    ) -> OAuthApp:
        """Set (replace) the app; ``integration_params``: values of the entry's admin params."""
        entry = self.catalog.get(app_key)
        if entry is None:
            raise UnknownConnectorType(app_key, self.catalog.entries, "app_key")
        params = app_params(entry, integration_params)
        app = await self.repository.get(organization_id, app_key)
        if app is None:
            app = OAuthApp(id=new_id("app"), organization_id=organization_id, app_key=app_key)
            self.repository.add(app)
        app.client_id = client_id
        app.client_secret_ct = self.sealer.seal(client_secret, _aad(app.id))
        app.key_id = self.sealer.key_id
        app.scopes = scopes
        app.integration_params = params or None
        await self.session.commit()
        return app

    async def visible_to(self, organization_id: str) -> list[OAuthApp]:
        """One app per provider: the organization's own where it has one."""
        chosen: dict[str, OAuthApp] = {}
        for app in await self.repository.visible_to(organization_id):
            if app.app_key not in chosen or app.organization_id is not None:
                chosen[app.app_key] = app
        return [chosen[key] for key in sorted(chosen)]

    async def every(self) -> Sequence[OAuthApp]:
        return await self.repository.every()

    async def configured_keys(self, organization_id: str) -> set[str]:
        return {app.app_key for app in await self.repository.visible_to(organization_id)}

    async def delete(self, organization_id: str | None, app_key: str) -> None:
        app = await self.repository.get(organization_id, app_key)
        if app is None:
            raise ResourceNotFound(f"No OAuth app for {app_key} in this organization.")
        await self.repository.delete(app)
        await self.session.commit()

    async def resolve(self, organization_id: str, app_key: str) -> ResolvedApp:
        app = await self.repository.get(organization_id, app_key) or await self.repository.get(
            None, app_key
        )
        if app is None:
            raise ConnectorNotConfigured(app_key)
        return ResolvedApp(app, self.credentials(app))

    async def by_id(self, app_id: str | None) -> ResolvedApp | None:
        app = await self.repository.get_by_id(app_id) if app_id else None
        return ResolvedApp(app, self.credentials(app)) if app else None

    def credentials(self, app: OAuthApp) -> ClientCredentials:
        secret = self.sealer.open(app.key_id, app.client_secret_ct, _aad(app.id))
        return ClientCredentials(app.client_id, secret)
