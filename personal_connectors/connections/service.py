"""Connection logic: saving an authorization, listing, and disconnecting with revocation."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from personal_connectors.apps.gateway import client_for
from personal_connectors.apps.registrations import McpRegistrations
from personal_connectors.apps.service import OAuthAppService
from personal_connectors.connections.repository import ConnectionRepository, ListFilters
from personal_connectors.connections.revocation import revoke_grant
from personal_connectors.connections.tags import (
    check_depth,
    check_metadata,
    check_tags,
    merge_patch,
)
from personal_connectors.events.repository import EventRepository
from personal_connectors.events.types import EventType
from personal_connectors.identity.service import OrgAccess, Principal
from personal_connectors.models import (
    ID_MAX_LENGTH,
    NO_AUTH_MODE,
    Connection,
    ConnectionStatus,
    new_id,
    utcnow,
)
from personal_connectors.oauth.client import OAuthClient, TokenGrant
from personal_connectors.oauth.identity import AccountIdentity
from personal_connectors.providers.schema import MINTING_MODES, ProviderEntry
from personal_connectors.runtime import Runtime
from personal_connectors.storage.paging import Page, PageRequest
from personal_connectors.tokens.exceptions import ConnectionNotFound
from personal_connectors.tokens.vault import TokenVault

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class McpServerOf:
    """The custom MCP server of a connection being saved (SPEC §11)."""

    server_url: str
    display_name: str
    registration_id: str | None  # None: the server needs no authorization


@dataclass(frozen=True)
class StoredCredentials:
    """A credentials-mode connection's (SPEC §10) mode, fields and label, as an import writes
    them (``POST /credentials`` proves them first: ``credentials.service``)."""

    auth_mode: str
    values: Mapping[str, str]
    name: str | None = None


class ConnectionService:
    def __init__(self, session: AsyncSession, runtime: Runtime) -> None:
        self.session = session
        self.runtime = runtime
        self.repository = ConnectionRepository(session)
        self.vault = TokenVault(runtime.sealer)
        self.events = EventRepository(session)

    async def save_authorization(
        self,
        *,
        organization_id: str,
        user_id: str,
        app_key: str,
        oauth_app_id: str | None,
        integration_params: Mapping[str, str],
        identity: AccountIdentity,
        grant: TokenGrant | None,
        mcp: McpServerOf | None = None,
    ) -> tuple[Connection, bool]:
        """Create the connection, or update it when this user connected this account before.

        ``mcp``: the custom MCP server the connection reaches (SPEC §11); ``grant`` None: that
        server needs no authorization. Returns the connection and whether it is new. Commits.
        """
        for attempt in (1, 2):
            existing = await self.repository.find_live_account(
                organization_id,
                user_id,
                app_key,
                identity.account_id,
                mcp.server_url if mcp is not None else None,
            )
            connection, created = await self.stage_authorization(
                existing,
                organization_id=organization_id,
                user_id=user_id,
                app_key=app_key,
                oauth_app_id=oauth_app_id,
                integration_params=integration_params,
                identity=identity,
                grant=grant,
                mcp=mcp,
            )
            try:
                await self.session.commit()
                return connection, created
            except IntegrityError:
                # Two callbacks for the same account raced; the other one created it first.
                await self.session.rollback()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def stage_authorization(
        self,
        existing: Connection | None,
        *,
        organization_id: str,
        user_id: str,
        app_key: str,
        oauth_app_id: str | None,
        integration_params: Mapping[str, str],
        identity: AccountIdentity,
        grant: TokenGrant | None,
        tags: Mapping[str, str] | None = None,
        metadata: Mapping[str, Any] | None = None,
        mcp: McpServerOf | None = None,
        credentials: StoredCredentials | None = None,
        **event_detail: Any,
    ) -> tuple[Connection, bool]:
        """Write an authorization onto ``existing`` (this account's live connection) or a new one.

        Only stages the change and its event in the session: ``save_authorization`` commits one
        at a time, the importer looks many accounts up at once and commits in batches, and both
        get the same rules for what a re-authorization overwrites. The tokens are sealed before
        any field changes, so a failure there (an old refresh token no configured key opens)
        leaves ``existing`` untouched. ``tags`` and ``metadata`` (an import's, checked by the
        caller) replace the connection's when given; a flow gives none and keeps them. Returns
        the connection and whether it is new.

        ``credentials``: an imported credentials-mode connection's fields, with its minted token
        as ``grant`` if it has one; a minting connection without one is due at once, so the
        first hand-out mints it.
        """
        created = existing is None
        connection = existing or Connection(
            id=new_id("conn"),
            organization_id=organization_id,
            user_id=user_id,
            app_key=app_key,
            account_id=identity.account_id,
            version=1,
        )
        if credentials is not None:
            self.vault.store_credentials(connection, credentials.values, grant)
            connection.auth_mode = credentials.auth_mode
            if credentials.name is not None:
                connection.credential_name = credentials.name
            if grant is None and credentials.auth_mode in MINTING_MODES:
                connection.expires_at = utcnow()
        elif grant is not None:
            self.vault.store(connection, grant)
        else:  # a custom MCP server that needs no authorization: nothing to seal
            connection.key_id = self.runtime.sealer.key_id
            connection.auth_mode = NO_AUTH_MODE
        if created:
            self.repository.add(connection)
            if mcp is not None:  # the gateway's prefix comes from the name: it stays
                connection.mcp_server_url = mcp.server_url
                connection.display_name = mcp.display_name
        else:
            connection.version += 1
        if mcp is not None:
            connection.mcp_registration_id = mcp.registration_id
        connection.oauth_app_id = oauth_app_id
        connection.account_email = identity.email
        connection.account_name = identity.name
        connection.integration_params = dict(integration_params)
        connection.scopes = list(grant.scopes or []) if grant is not None else []
        # Merged: an import (which carries none) keeps what the provider sent before.
        connection.provider_metadata = {
            **(connection.provider_metadata or {}),
            **(grant.metadata if grant is not None else {}),
        }
        if tags is not None:
            connection.tags = dict(tags)
        if metadata is not None:
            connection.metadata_ = dict(metadata)
        connection.status = ConnectionStatus.ACTIVE
        connection.status_reason = None
        connection.last_sync_at = utcnow()
        await self.events.record(
            connection,
            EventType.CREATED if created else EventType.REAUTHORIZED,
            scopes=connection.scopes,
            **event_detail,
        )
        return connection, created

    async def list_for(
        self, access: OrgAccess, *, app_key: str | None = None, status: str | None = None
    ) -> Sequence[Connection]:
        return (
            await self.repository.list_page(self._owner(access), ListFilters(app_key, status))
        ).items

    async def page_for(
        self, access: OrgAccess, page: PageRequest, filters: ListFilters
    ) -> Page[Connection]:
        """One page of the caller's list (``GET /``)."""
        return await self.repository.list_page(self._owner(access), filters, page)

    def _owner(self, access: OrgAccess) -> ColumnElement[bool]:
        """Whose connections the caller lists: their own, or for a service key naming no end
        user, every end user's of the organization."""
        if access.all_end_users:
            return self.repository.owned_by_end_users(access.organization_id)
        return self.repository.owned_by(access.organization_id, access.user_id)

    async def update_labels(
        self, access: OrgAccess, connection_id: str, patch: Mapping[str, Any]
    ) -> Connection:
        """Apply ``patch`` (``{"tags"?, "metadata"?}``) as an RFC 7396 merge patch of the
        document ``{"tags": …, "metadata": …}``: a field left out stays, a null one empties.

        Both results are checked whole before either is written, so a refused patch changes
        nothing. A patch that changes something records ``connection.updated``.
        """
        connection = None
        if len(connection_id) <= ID_MAX_LENGTH:
            connection = await self.repository.get_owned_locked(
                connection_id, access.user_id, access.organization_id
            )
        if connection is None:
            await self.session.rollback()  # SQLite's write lock, taken for nothing
            raise ConnectionNotFound()
        for field in ("tags", "metadata"):
            check_depth(patch.get(field), field)  # before the merge recurses into it
        before = {"tags": connection.tags or {}, "metadata": connection.metadata_ or {}}
        after = merge_patch(before, dict(patch))
        tags = check_tags(after.get("tags", {}))
        metadata = check_metadata(after.get("metadata", {}))
        changed = [
            field
            for field, value in (("tags", tags), ("metadata", metadata))
            if value != before[field]
        ]
        if changed:
            connection.tags = tags
            connection.metadata_ = metadata
            await self.events.record(connection, EventType.UPDATED, changed=changed)
        await self.session.commit()  # also when nothing changed: the lock is let go
        return connection

    async def get_for(
        self, principal: Principal, connection_id: str, organization_id: str | None = None
    ) -> Connection:
        connection = None
        if len(connection_id) <= ID_MAX_LENGTH:
            connection = await self.repository.get_owned(
                connection_id, principal.user_id, organization_id
            )
        if connection is None:
            raise ConnectionNotFound()
        return connection

    async def set_active(
        self, access: OrgAccess, connection_id: str, is_active: bool
    ) -> Connection:
        """Disable or enable. The tokens stay, so enabling again needs no new authorization.

        Setting the state it already has changes nothing and records nothing.
        """
        connection = await self.get_in(access, connection_id)
        if connection.is_active != is_active:
            connection.is_active = is_active
            await self.events.record(
                connection, EventType.ENABLED if is_active else EventType.DISABLED
            )
            await self.session.commit()
            self.runtime.mcp_tools.drop(connection.id)  # SPEC §11: a toggle drops the tool list
        return connection

    async def configure_tools(
        self,
        access: OrgAccess,
        connection_id: str,
        *,
        enabled: bool,
        allowed_tools: list[str] | None,
    ) -> Connection:
        """Which of the connection's tools the platform may load (``None``: all of them)."""
        connection = await self.get_in(access, connection_id)
        connection.tools_enabled = enabled
        connection.allowed_tools = allowed_tools
        await self.session.commit()
        self.runtime.mcp_tools.drop(connection.id)  # SPEC §11: the tool list is asked again
        return connection

    async def get_in(self, access: OrgAccess, connection_id: str) -> Connection:
        """The caller's connection within the organization they act in (else 404); for a
        service key naming no end user (the organization-wide list), any end user's."""
        if access.all_end_users:
            found = None
            if len(connection_id) <= ID_MAX_LENGTH:
                found = await self.repository.get_of_end_users(
                    connection_id, access.organization_id
                )
            if found is None:
                raise ConnectionNotFound()
            return found
        return await self.get_for(access.principal, connection_id, access.organization_id)

    async def disconnect(
        self, principal: Principal, connection_id: str, organization_id: str | None = None
    ) -> None:
        """Revoke at the provider (bounded, best effort), wipe the tokens, mark deleted."""
        await self.remove(await self.get_for(principal, connection_id, organization_id))

    async def remove(self, connection: Connection) -> None:
        """``disconnect`` of a connection already found. Commits."""
        await self._revoke(connection)
        self.vault.wipe(connection)
        connection.status = ConnectionStatus.DELETED
        connection.is_active = False
        connection.deleted_at = utcnow()
        connection.version += 1
        await self.events.record(connection, EventType.DELETED)
        await self.session.commit()

    async def _revocation_client(
        self, connection: Connection
    ) -> tuple[ProviderEntry, OAuthClient] | None:
        """The client that revokes ``connection``'s grant: its OAuth app's at the catalog's
        provider, or the service's registration at a custom MCP server's authorization server."""
        if connection.mcp_server_url is not None:
            return await McpRegistrations(self.session, self.runtime).client(
                connection.mcp_registration_id
            )
        entry = self.runtime.catalog.get(connection.app_key)
        apps = OAuthAppService(self.session, self.runtime.sealer, self.runtime.catalog)
        resolved = await apps.by_id(connection.oauth_app_id)
        if entry is None or resolved is None:
            return None
        return entry, await client_for(
            self.runtime, entry, connection.integration_params, resolved.credentials
        )

    async def _revoke(self, connection: Connection) -> None:
        if connection.credentials_ct is not None:
            # Credentials (SPEC §10) are the user's own: only they can revoke them at the
            # provider; wiping our copy is the disconnect.
            return
        if connection.auth_mode == NO_AUTH_MODE:
            return  # a custom MCP server that needs no authorization: nothing was granted
        access_token = self.vault.access_token(connection)
        refresh_token = self.vault.refresh_token(connection)
        try:
            found = await self._revocation_client(connection)
            if found is None:
                await self.events.record(
                    connection, EventType.REVOCATION_FAILED, reason="provider or OAuth app removed"
                )
                return
            entry, client = found
        except Exception as exc:  # the disconnect must never be blocked by the provider
            await self.events.record(
                connection, EventType.REVOCATION_FAILED, reason=type(exc).__name__
            )
            return
        outcomes = await revoke_grant(
            client,
            self.runtime.http,
            access_token=access_token,
            refresh_token=refresh_token,
            time_limit=self.runtime.settings.revocation_timeout_seconds,
            metadata=connection.provider_metadata or {},
        )
        revoked = any(outcome.revoked for outcome in outcomes)
        await self.events.record(
            connection,
            EventType.REVOKED if revoked else EventType.REVOCATION_FAILED,
            outcomes=[outcome.as_detail() for outcome in outcomes],
        )
        if not revoked:
            logger.warning("revocation of %s at %s did not succeed", connection.id, entry.key)
