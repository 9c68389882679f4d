"""Handing out valid access tokens (SPEC §3.3 ``POST /{id}/token``).

Work in progress: the refresh path (single flight, database lock, compare-and-swap) lands here.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from personal_connectors.models import Connection
from personal_connectors.runtime import Runtime
from personal_connectors.tokens.vault import TokenVault


class TokenService:
    def __init__(self, session: AsyncSession, runtime: Runtime) -> None:
        self.session = session
        self.runtime = runtime
        self.vault = TokenVault(runtime.sealer)

    async def valid_access_token(self, connection: Connection) -> str | None:
        """An access token for ``connection`` that is valid now (refreshed first if needed)."""
        return self.vault.access_token(connection)
