"""Handing out valid access tokens: the hot path of the service (SPEC §3.3).

A current token is decrypted and returned without any write; only a token inside the
provider's refresh margin (or a forced refresh) goes through the ``Refresher``.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from personal_connectors.connections.service import ConnectionService
from personal_connectors.identity.service import OrgAccess
from personal_connectors.models import Connection, ConnectionStatus, utcnow
from personal_connectors.runtime import Runtime
from personal_connectors.tokens.exceptions import ConnectionDisabled, ReauthorizationRequired
from personal_connectors.tokens.refresh import FreshToken, Refresher, needs_refresh
from personal_connectors.tokens.schemas import TokenOut


class TokenService:
    def __init__(self, session: AsyncSession, runtime: Runtime) -> None:
        self.session = session
        self.runtime = runtime
        self.refresher = Refresher(runtime)

    async def issue(
        self, access: OrgAccess, connection_id: str, *, force_refresh: bool
    ) -> TokenOut:
        connection = await ConnectionService(self.session, self.runtime).get_in(
            access, connection_id
        )
        if not connection.is_active:
            raise ConnectionDisabled("The connection is disabled; enable it to use its token.")
        token = await self.fresh_token(connection, force=force_refresh)
        return TokenOut(
            access_token=token.access_token,
            token_type=token.token_type,
            expires_at=token.expires_at,
            scopes=token.scopes,
            connection_id=connection.id,
            app_key=connection.app_key,
        )

    async def fresh_token(self, connection: Connection, *, force: bool = False) -> FreshToken:
        if connection.status == ConnectionStatus.NEEDS_REAUTH:
            raise ReauthorizationRequired(
                connection.status_reason or "The provider rejected the refresh token."
            )
        entry = self.runtime.catalog.get(connection.app_key)
        if force or needs_refresh(connection, entry, utcnow()):
            # End the read transaction first: a caller waiting on another's refresh must not
            # hold a pooled connection the refresher itself needs.
            await self.session.commit()
            return await self.refresher.refresh(connection, force=force)
        return self.refresher.current(connection)

    async def valid_access_token(self, connection: Connection) -> str | None:
        """An access token for ``connection`` that is valid now (refreshed first if needed)."""
        return (await self.fresh_token(connection)).access_token
