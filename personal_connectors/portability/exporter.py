"""Exporting an organization's live connections, tokens (and SPEC §10 credentials) included,
always encrypted.

The lines are exactly what ``importer`` reads, so ``export`` then ``import`` moves connections
between organizations or installations; the file is wrapped in ``envelope`` because it holds
every token of the organization in clear once opened.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from personal_connectors.apps.repository import McpRegistrationRepository
from personal_connectors.connections.repository import ConnectionRepository
from personal_connectors.crypto.aead import DecryptionError
from personal_connectors.crypto.keyring import KeyConfigurationError
from personal_connectors.identity.exceptions import IdentityError
from personal_connectors.identity.repository import IdentityRepository
from personal_connectors.models import Connection
from personal_connectors.portability.envelope import check_passphrase, seal
from personal_connectors.portability.errors import PortabilityError
from personal_connectors.portability.schemas import ConnectionRecord, describe
from personal_connectors.runtime import Runtime
from personal_connectors.tokens.vault import TokenVault

STREAM_ROWS = 500

Progress = Callable[[int], None]


class ConnectionExporter:
    def __init__(self, session: AsyncSession, runtime: Runtime) -> None:
        self.session = session
        self.vault = TokenVault(runtime.sealer)

    async def count(self, organization_id: str) -> int:
        """How many connections an export of the organization holds (for a progress bar)."""
        await self._require_organization(organization_id)
        return await ConnectionRepository(self.session).count_live(organization_id)

    async def records(self, organization_id: str) -> AsyncIterator[ConnectionRecord]:
        """The organization's live connections, oldest first, streamed from the database."""
        connections = ConnectionRepository(self.session)
        async for connection in connections.stream_live(organization_id, STREAM_ROWS):
            yield self._record(connection, await self._client_id(connection))

    async def _require_organization(self, organization_id: str) -> None:
        # An unknown organization would otherwise export as an empty, valid-looking file.
        if await IdentityRepository(self.session).get_organization(organization_id) is None:
            raise IdentityError(f"no organization {organization_id}")

    async def _client_id(self, connection: Connection) -> str | None:
        """The client a custom MCP server's tokens were issued to (its registration's id)."""
        if connection.mcp_registration_id is None:
            return None
        registration = await McpRegistrationRepository(self.session).get_by_id(
            connection.mcp_registration_id
        )
        if registration is None:
            raise PortabilityError(
                f"connection {connection.id}: its MCP server's client registration is gone; "
                "connect the server again"
            )
        return registration.client_id

    def _record(self, connection: Connection, mcp_client_id: str | None) -> ConnectionRecord:
        """A connection as a line; refuses rather than writing a line the import would reject.

        An export that silently left out an unreadable connection would look complete.
        """
        try:
            access_token = self.vault.access_token(connection)
            refresh_token = self.vault.refresh_token(connection)
            credentials = self.vault.credentials(connection)
        except (DecryptionError, KeyConfigurationError):
            raise PortabilityError(
                f"connection {connection.id}: its tokens do not open with the configured keys"
            ) from None
        if connection.auth_mode == "oauth2" and not connection.mcp_server_url:
            access_token = access_token or ""  # (refused below: a live one always has one)
        try:
            return ConnectionRecord(
                # An end user's connection names the platform's id, not the internal user.
                user_id=None if connection.end_user_id else connection.user_id,
                end_user_id=connection.end_user_id,
                app_key=connection.app_key,
                account_id=connection.account_id,
                account_email=connection.account_email,
                account_name=connection.account_name,
                access_token=access_token,
                refresh_token=refresh_token,
                expires_at=connection.expires_at,
                scopes=list(connection.scopes or []),
                token_type=connection.token_type,
                integration_params=dict(connection.integration_params or {}),
                tags=dict(connection.tags or {}),
                metadata=dict(connection.metadata_ or {}),
                mcp_server_url=connection.mcp_server_url,
                display_name=connection.display_name if connection.mcp_server_url else None,
                mcp_client_id=mcp_client_id,
                provider_metadata=dict(connection.provider_metadata or {}),
                # A custom MCP server's line says by its tokens whether it needs authorization.
                auth_mode="oauth2" if connection.mcp_server_url else connection.auth_mode,
                credentials=credentials,
                credential_name=connection.credential_name,
            )
        except ValidationError as exc:
            raise PortabilityError(
                f"connection {connection.id} cannot be exported: {describe(exc)}"
            ) from None

    async def export(
        self,
        path: Path,
        organization_id: str,
        passphrase: str,
        progress: Progress | None = None,
    ) -> int:
        """Write the encrypted export to ``path``; returns how many connections it holds."""
        check_passphrase(passphrase)  # before the work, not after it
        await self._require_organization(organization_id)
        lines: list[str] = []
        async for record in self.records(organization_id):
            lines.append(record.to_line())
            if progress is not None:
                progress(1)
        plaintext = "".join(line + "\n" for line in lines).encode()
        write_private(path, seal(plaintext, passphrase))
        return len(lines)


def write_private(path: Path, data: bytes) -> None:
    """Owner-only (0600), complete or absent: written beside the target, then renamed over it."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise PortabilityError(f"{path}: cannot be written ({exc.strerror})") from None
