"""The steps every grant's flow shares (redirect and device): the provider client of a flow,
the token request and identity call, saving the connection, and ending a flow that failed.

``FlowService`` (redirect flows, complete-oauth) and ``DeviceFlows`` both build on them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable

from sqlalchemy.ext.asyncio import AsyncSession

from personal_connectors.apps.gateway import client_for
from personal_connectors.apps.registrations import McpRegistrations
from personal_connectors.apps.service import OAuthAppService
from personal_connectors.connections.service import ConnectionService, McpServerOf
from personal_connectors.crypto.aead import associated_data
from personal_connectors.exceptions import APIError
from personal_connectors.flows.custom_mcp import default_name
from personal_connectors.flows.exceptions import FlowFailed
from personal_connectors.flows.repository import FlowRepository
from personal_connectors.mcp_servers.outcomes import ServerFailure
from personal_connectors.models import Connection, Flow, FlowStatus, utcnow
from personal_connectors.models.mcp_registration import DISPLAY_NAME_MAX_LENGTH
from personal_connectors.oauth.client import OAuthClient, TokenGrant
from personal_connectors.oauth.errors import ProviderFailure, ProviderRejected, ProviderUnreachable
from personal_connectors.oauth.identity import AccountIdentity, read_identity
from personal_connectors.providers.schema import ProviderEntry
from personal_connectors.runtime import Runtime

logger = logging.getLogger(__name__)


def flow_aad(flow_id: str, field: str) -> bytes:
    return associated_data("flows", flow_id, field)


class FlowSteps:
    def __init__(self, session: AsyncSession, runtime: Runtime) -> None:
        self.session = session
        self.runtime = runtime
        self.repository = FlowRepository(session)
        self.apps = OAuthAppService(session, runtime.sealer, runtime.catalog)

    async def client(self, flow: Flow) -> tuple[ProviderEntry, OAuthClient]:
        if flow.mcp_server_url is not None:  # a custom MCP server: the service's registration
            found = await McpRegistrations(self.session, self.runtime).client(
                flow.mcp_registration_id
            )
            if found is None:
                raise FlowFailed("server_error", "The MCP server's registration is gone.")
            return found
        entry = self.runtime.catalog.get(flow.app_key)
        resolved = await self.apps.by_id(flow.oauth_app_id)
        if entry is None or resolved is None:
            raise FlowFailed("server_error", "The connector is no longer configured.")
        try:
            return entry, await client_for(
                self.runtime, entry, flow.integration_params, resolved.credentials
            )
        except APIError as exc:  # the metadata document could not be fetched or was refused
            logger.warning("flow %s: the provider's metadata: %s", flow.id, exc.system_message)
            raise FlowFailed(
                "temporarily_unavailable", "The provider could not be reached."
            ) from None

    async def obtain(
        self,
        flow: Flow,
        entry: ProviderEntry,
        client: OAuthClient,
        token_request: Awaitable[TokenGrant],
    ) -> tuple[TokenGrant, AccountIdentity]:
        """Any grant's token request (code exchange, device polling), then the identity call.

        Provider failures end the flow; a flow that extends a connection must bring back
        that connection's account, never silently connect another one.
        """
        try:
            grant = await token_request
            identity = await self._identity(flow, entry, client, grant)
        except ProviderRejected as exc:
            raise FlowFailed(
                exc.error, exc.description or "The provider refused the code."
            ) from None
        except ProviderUnreachable as exc:
            logger.warning("flow %s: the token or identity call failed (%s)", flow.id, exc)
            raise FlowFailed(
                "temporarily_unavailable", "The provider could not be reached."
            ) from None
        except ProviderFailure as exc:
            raise FlowFailed("provider_error", str(exc)) from None
        if flow.extends_connection_id is not None:
            extended = await self.session.get(Connection, flow.extends_connection_id)
            if extended is None or extended.account_id != identity.account_id:
                raise FlowFailed(
                    "account_mismatch",
                    "Another account consented than the one of the connection to extend.",
                )
        return grant, identity

    async def _identity(
        self, flow: Flow, entry: ProviderEntry, client: OAuthClient, grant: TokenGrant
    ) -> AccountIdentity:
        if flow.mcp_server_url is None:
            return await read_identity(
                entry, client.endpoints, grant, self.runtime.http, client.credentials
            )
        registrations = McpRegistrations(self.session, self.runtime)
        registration = await registrations.get(flow.mcp_registration_id)
        if registration is None:
            raise FlowFailed("server_error", "The MCP server's registration is gone.")
        return await registrations.identity(registration, grant, flow.mcp_server_url)

    async def connect(self, flow: Flow, grant: TokenGrant, identity: AccountIdentity) -> str:
        mcp = None
        if flow.mcp_server_url is not None:
            name = flow.display_name or await self._server_name(flow.mcp_server_url, grant)
            mcp = McpServerOf(flow.mcp_server_url, name, flow.mcp_registration_id)
        connection, _ = await ConnectionService(self.session, self.runtime).save_authorization(
            organization_id=flow.organization_id,
            user_id=flow.user_id,
            app_key=flow.app_key,
            oauth_app_id=flow.oauth_app_id,
            integration_params=flow.integration_params,
            identity=identity,
            grant=grant,
            mcp=mcp,
        )
        flow.status = FlowStatus.COMPLETED
        flow.connection_id = connection.id
        flow.grant_ct = None
        flow.code_verifier_ct = None
        flow.finished_at = utcnow()
        await self.session.commit()
        self.runtime.flow_wakeups.notify(flow.id)
        return connection.id

    async def _server_name(self, server_url: str, grant: TokenGrant) -> str:
        """A custom MCP server's own name (``serverInfo.name``), asked with the new token;
        its host when it does not say in time."""
        from personal_connectors.mcp_servers.client import server_info

        headers = {"Authorization": f"{grant.token_type} {grant.access_token}"}
        try:
            async with asyncio.timeout(self.runtime.settings.provider_timeout_seconds):
                info = await server_info(self.runtime.http, server_url, headers)
        except (ServerFailure, TimeoutError) as exc:
            logger.info("MCP server name not read (%s); its host is used", type(exc).__name__)
            return default_name(server_url)
        return info.name[:DISPLAY_NAME_MAX_LENGTH] or default_name(server_url)

    async def fail(self, flow: Flow, failure: FlowFailed) -> None:
        flow.status = FlowStatus.FAILED
        flow.error_code = failure.code
        flow.error_description = failure.description
        flow.code_verifier_ct = None
        flow.finished_at = utcnow()
        await self.session.commit()
        self.runtime.flow_wakeups.notify(flow.id)
