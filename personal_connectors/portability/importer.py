"""Importing connections from JSON Lines (SPEC §4 ``connectors connections import``).

Lines are read in batches: each batch costs one membership query, one query for the live
connections it may update, and one commit, so 10,000 lines take seconds, not minutes. Within a
batch every line is validated on its own; a bad line is reported with its number and writes
nothing. Writing goes through ``ConnectionService.stage_authorization``, the same code a
completed OAuth flow uses, so an import follows the flow's re-authorization rules exactly.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from personal_connectors.apps.registrations import CUSTOM_MCP
from personal_connectors.apps.repository import McpRegistrationRepository
from personal_connectors.apps.service import OAuthAppService
from personal_connectors.connections.repository import ConnectionRepository
from personal_connectors.connections.service import (
    ConnectionService,
    McpServerOf,
    StoredCredentials,
)
from personal_connectors.crypto.aead import DecryptionError
from personal_connectors.crypto.keyring import KeyConfigurationError
from personal_connectors.exceptions import ConnectorNotConfigured
from personal_connectors.identity.exceptions import IdentityError
from personal_connectors.identity.repository import IdentityRepository
from personal_connectors.identity.service import IdentityService
from personal_connectors.models import Connection
from personal_connectors.oauth.client import TokenGrant
from personal_connectors.oauth.identity import AccountIdentity
from personal_connectors.portability.envelope import is_sealed_file, open_sealed
from personal_connectors.portability.errors import EnvelopeError, PortabilityError
from personal_connectors.portability.schemas import ConnectionRecord, ImportContext, describe
from personal_connectors.runtime import Runtime

BATCH_SIZE = 500

Progress = Callable[[int], None]
"""Called with the number of lines just processed (good, bad and blank alike)."""

# user_id, app_key, account_id and a custom MCP server's URL ("" for the others): what makes a
# re-import an update (one connection per user and server, SPEC §11).
_AccountKey = tuple[str, str, str, str]


@dataclass(frozen=True)
class LineError:
    line: int
    message: str


@dataclass
class ImportReport:
    imported: int = 0
    updated: int = 0
    failed: int = 0
    errors: list[LineError] = field(default_factory=list)

    def fail(self, line: int, message: str) -> None:
        self.failed += 1
        self.errors.append(LineError(line, message))

    def as_dict(self) -> dict[str, Any]:
        self.errors.sort(key=lambda error: error.line)
        return {
            "imported": self.imported,
            "updated": self.updated,
            "failed": self.failed,
            "errors": [{"line": e.line, "message": e.message} for e in self.errors],
        }


@dataclass(frozen=True)
class ImportSource:
    """The raw lines of an import file and how many there are (for a progress bar)."""

    lines: Iterable[bytes]
    total: int


def read_source(path: Path, passphrase: str | None) -> ImportSource:
    """Plain JSON Lines are streamed; an encrypted export is opened in memory (GCM is one-shot).

    ``passphrase`` must be given exactly when the file is encrypted, so a mistaken file (a plain
    one where an export was expected, or the reverse) is noticed instead of half-imported.
    """
    try:
        sealed = is_sealed_file(path)
        if sealed != (passphrase is not None):
            raise EnvelopeError(
                "the file is an encrypted export: a passphrase is needed"
                if sealed
                else "the file is not an encrypted export, yet a passphrase was given"
            )
        if passphrase is not None:
            data = open_sealed(path.read_bytes(), passphrase)
            return ImportSource(list(io.BytesIO(data)), _count_lines([data]))
        with path.open("rb") as handle:
            total = _count_lines(iter(lambda: handle.read(1 << 20), b""))
    except OSError as exc:
        raise PortabilityError(f"{path}: cannot be read ({exc.strerror})") from None
    return ImportSource(_stream_lines(path), total)


def _count_lines(chunks: Iterable[bytes]) -> int:
    """Lines as iterating the file yields them: newlines, plus an unterminated last line."""
    newlines, last = 0, b"\n"
    for chunk in chunks:
        newlines += chunk.count(b"\n")
        last = chunk[-1:]
    return newlines + (0 if last == b"\n" else 1)


def _stream_lines(path: Path) -> Iterator[bytes]:
    with path.open("rb") as handle:
        yield from handle


@dataclass(frozen=True)
class _Parsed:
    line: int
    data: dict[str, Any]


@dataclass(frozen=True)
class _Valid:
    line: int
    record: ConnectionRecord
    user_id: str  # the owner's internal user: the member, or the end user's

    @property
    def key(self) -> _AccountKey:
        record = self.record
        return (self.user_id, record.app_key, record.account_id, record.mcp_server_url or "")


class ConnectionImporter:
    """Imports lines into one organization; one instance per import run."""

    def __init__(
        self,
        session: AsyncSession,
        runtime: Runtime,
        organization_id: str,
        *,
        batch_size: int = BATCH_SIZE,
    ) -> None:
        self.session = session
        self.runtime = runtime
        self.organization_id = organization_id
        self.batch_size = batch_size
        self.connections = ConnectionService(session, runtime)
        self.apps = OAuthAppService(session, runtime.sealer, runtime.catalog)
        self.registrations = McpRegistrationRepository(session)
        # A custom MCP server's registration in this organization: its id and client id.
        self._clients: dict[str, tuple[str, str] | None] = {}
        self._app_in_effect: dict[str, str | None] = {}

    async def run(self, lines: Iterable[bytes], progress: Progress | None = None) -> ImportReport:
        if await IdentityRepository(self.session).get_organization(self.organization_id) is None:
            raise IdentityError(f"no organization {self.organization_id}")
        report = ImportReport()
        batch: list[_Parsed] = []
        unreported = 0
        for number, raw in enumerate(lines, start=1):
            unreported += 1
            parsed = self._parse(number, raw, report)
            if parsed is not None:
                batch.append(parsed)
            if len(batch) >= self.batch_size:
                await self._import_batch(batch, report)
                batch = []
                if progress is not None:
                    progress(unreported)
                unreported = 0
        if batch:
            await self._import_batch(batch, report)
        if progress is not None and unreported:
            progress(unreported)
        return report

    @staticmethod
    def _parse(number: int, raw: bytes, report: ImportReport) -> _Parsed | None:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            report.fail(number, "not valid UTF-8")
            return None
        text = text.removeprefix("\ufeff").strip()
        if not text:
            return None  # blank lines (a trailing newline, spacing) are not connections
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            # The decoder's message names a position, never the text around it.
            report.fail(number, f"not valid JSON ({exc.msg} at column {exc.colno})")
            return None
        if not isinstance(data, dict):
            report.fail(number, "must be a JSON object")
            return None
        return _Parsed(number, data)

    async def _import_batch(self, batch: list[_Parsed], report: ImportReport) -> None:
        user_ids = {p.data["user_id"] for p in batch if isinstance(p.data.get("user_id"), str)}
        context = ImportContext(await self._members(user_ids), self.runtime.catalog)
        records: list[tuple[int, ConnectionRecord]] = []
        for parsed in batch:
            try:
                records.append(
                    (parsed.line, ConnectionRecord.model_validate(parsed.data, context=context))
                )
            except ValidationError as exc:
                report.fail(parsed.line, describe(exc))
        end_users = await self._end_users(
            {record.end_user_id for _, record in records if record.end_user_id is not None}
        )
        valid = [
            _Valid(line, record, record.user_id or end_users[record.end_user_id or ""])
            for line, record in records
        ]
        if valid:
            await self._write(valid, report)

    async def _write(self, valid: list[_Valid], report: ImportReport) -> None:
        """Stage and commit a batch; if the database refuses it, retry line by line.

        A refusal (a concurrent OAuth callback created the same account a moment ago, a value
        the database will not store) must cost only the line at fault, not its 499 neighbours.
        """
        try:
            created, refused = await self._stage(valid)
            await self.session.commit()
        except (IntegrityError, DataError) as exc:
            await self.session.rollback()
            if len(valid) == 1:
                report.fail(valid[0].line, f"the database refused it ({type(exc.orig).__name__})")
                return
            for item in valid:
                await self._write([item], report)
            return
        finally:
            # Committed rows are not needed again; keep memory flat over a long file.
            self.session.expunge_all()
        for error in refused:
            report.fail(error.line, error.message)
        report.imported += sum(created)
        report.updated += len(created) - sum(created)

    async def _stage(self, valid: list[_Valid]) -> tuple[list[bool], list[LineError]]:
        live = await self._live_connections({item.key for item in valid})
        await self._resolve_apps(
            {item.record.app_key for item in valid if item.record.credentials is None}
            - {CUSTOM_MCP}
        )
        created: list[bool] = []
        refused: list[LineError] = []
        for item in valid:
            record = item.record
            mcp: McpServerOf | None = None
            if record.app_key == CUSTOM_MCP:
                mcp, refusal = await self._mcp_server(record)
                if refusal is not None:
                    refused.append(LineError(item.line, refusal))
                    continue
            credentials = None
            if record.credentials is not None:
                credentials = StoredCredentials(
                    record.auth_mode, record.credentials, record.credential_name
                )
            detail: dict[str, Any] = {"via": "import"}
            if credentials is not None:
                detail["auth_mode"] = record.auth_mode
            grant = None
            if record.access_token is not None:
                grant = TokenGrant(
                    record.access_token,
                    record.refresh_token,
                    record.token_type,
                    record.expires_at,
                    list(record.scopes),
                    metadata=dict(record.provider_metadata),
                )
            try:
                connection, is_new = await self.connections.stage_authorization(
                    live.get(item.key),
                    organization_id=self.organization_id,
                    user_id=item.user_id,
                    app_key=record.app_key,
                    # A credentials connection needs no OAuth app (SPEC §10), nor a custom
                    # MCP server's (its client is the organization's registration).
                    oauth_app_id=None if credentials else self._app_in_effect.get(record.app_key),
                    integration_params=record.integration_params,
                    identity=AccountIdentity(
                        record.account_id, record.account_email, record.account_name
                    ),
                    grant=grant,
                    tags=record.tags,
                    metadata=record.metadata,
                    mcp=mcp,
                    credentials=credentials,
                    **detail,
                )
            except (DecryptionError, KeyConfigurationError):
                # Keeping the old refresh token (the line has none) needs it opened.
                refused.append(
                    LineError(item.line, "the connection it updates holds tokens no key opens")
                )
                continue
            live[item.key] = connection  # a later line for the same account updates this one
            created.append(is_new)
        return created, refused

    async def _mcp_server(self, record: ConnectionRecord) -> tuple[McpServerOf | None, str | None]:
        """A custom MCP server line's server, or why it is refused. Its tokens were issued to
        the exporting organization's client registration, which no line carries (its secret
        stays where it was made): they import only where this organization holds that same
        client (the same installation and organization, e.g. a restore)."""
        assert record.mcp_server_url is not None and record.display_name is not None
        registration_id = None
        if record.mcp_client_id is not None:
            server_url = record.mcp_server_url
            if server_url not in self._clients:  # one query per server and run, not per line
                found = await self.registrations.for_server(self.organization_id, server_url)
                self._clients[server_url] = (found.id, found.client_id) if found else None
            registration = self._clients[server_url]
            if registration is None or registration[1] != record.mcp_client_id:
                return None, (
                    "its tokens were issued to another organization's client registration at "
                    "the MCP server's authorization server, which an export does not carry; "
                    "connect the server again in this organization"
                )
            registration_id = registration[0]
        return McpServerOf(record.mcp_server_url, record.display_name, registration_id), None

    async def _end_users(self, external_ids: set[str]) -> dict[str, str]:
        """The internal user of each named end user, created on first use (before any line of
        the batch is staged: creating one commits)."""
        identities = IdentityService(self.session)
        return {
            external_id: (
                await identities.ensure_end_user(self.organization_id, external_id)
            ).user_id
            for external_id in sorted(external_ids)
        }

    async def _members(self, user_ids: set[str]) -> set[str]:
        if not user_ids:
            return set()
        return await IdentityRepository(self.session).members_among(self.organization_id, user_ids)

    async def _live_connections(self, keys: set[_AccountKey]) -> dict[_AccountKey, Connection]:
        found = await ConnectionRepository(self.session).live_of_accounts(
            self.organization_id, {account_id for _, _, account_id, _ in keys}
        )
        return {
            key: connection
            for connection in found
            if (
                key := (
                    connection.user_id,
                    connection.app_key,
                    connection.account_id,
                    connection.mcp_server_url or "",
                )
            )
            in keys
        }

    async def _resolve_apps(self, app_keys: set[str]) -> None:
        """The OAuth app in effect for each provider in this organization, None where none is."""
        for app_key in app_keys - self._app_in_effect.keys():
            try:
                resolved = await self.apps.resolve(self.organization_id, app_key)
            except ConnectorNotConfigured:
                self._app_in_effect[app_key] = None
            else:
                self._app_in_effect[app_key] = resolved.app.id
