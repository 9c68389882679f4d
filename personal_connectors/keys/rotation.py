"""Key rotation: re-seal every stored secret under the newest key, while the service runs.

Operators put a new key first in ``CONNECTORS_ENCRYPTION_KEYS`` (keeping the old ones after it),
restart, and run ``connectors keys rotate``; once nothing remains on an old key, the old key can
be dropped. Every secret is opened with the key its row names and sealed again with the newest,
with the same associated data (table, row id, field) its owner uses.

Safe beside live traffic without locking anything for long: each row is read, re-sealed in
memory, and written back by a conditional UPDATE that only matches if the row still holds the
key id and the exact ciphertexts that were read. A row a token refresh rewrote in between (writers
always seal with the newest key) no longer matches, is left as the refresher wrote it, and is
counted as skipped. The ``version`` column is neither checked nor bumped: re-encryption changes
no token, so it must not make a concurrent refresh think its compare-and-swap lost.

Every instance must run with the new key before a rotation starts. An instance still sealing
with the old key only is detected where it writes by compare-and-swap (the token
refresh: its row is skipped and stays in ``remaining``), but an ORM write that re-seals a row it
loaded before the rotation leaves ``key_id`` untouched when it did not change from its point of
view, and would pair an old-key ciphertext with the new key id.

Work goes in batches keyed on the primary key and commits per batch, so an interrupted run
loses at most one batch and the next run picks up whatever is still on an old key.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, cast

from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncSession

from personal_connectors.crypto.aead import DecryptionError, Sealer, associated_data
from personal_connectors.crypto.keyring import KeyConfigurationError
from personal_connectors.keys.repository import SealedRowRepository
from personal_connectors.models import Connection, Flow, OAuthApp, WebhookEndpoint

DEFAULT_BATCH_SIZE = 200

Progress = Callable[[int], None]
"""Called with the number of rows just processed."""


@dataclass(frozen=True)
class SealedColumn:
    column: str
    field: str  # the field name in the associated data, as the column's owner seals it


@dataclass(frozen=True)
class SealedTable:
    table: Table
    columns: tuple[SealedColumn, ...]

    @property
    def name(self) -> str:
        return self.table.name


def _table(model: type[Any]) -> Table:
    return cast(Table, model.__table__)


# Every sealed secret in the database, with the associated data its writer binds it to:
# tokens.vault (connections), apps.service (oauth_apps), flows.service (flows),
# webhooks.service (webhook_endpoints).
SEALED_TABLES: tuple[SealedTable, ...] = (
    SealedTable(
        _table(Connection),
        (
            SealedColumn("access_token_ct", "access_token"),
            SealedColumn("refresh_token_ct", "refresh_token"),
            SealedColumn("credentials_ct", "credentials"),
        ),
    ),
    SealedTable(_table(OAuthApp), (SealedColumn("client_secret_ct", "client_secret"),)),
    SealedTable(
        _table(Flow),
        (SealedColumn("code_verifier_ct", "code_verifier"), SealedColumn("grant_ct", "grant")),
    ),
    SealedTable(_table(WebhookEndpoint), (SealedColumn("secret_ct", "secret"),)),
)


class Outcome(StrEnum):
    ROTATED = "rotated"
    SKIPPED = "skipped"  # changed since it was read (already re-sealed by its writer)
    UNREADABLE = "unreadable"  # its key is not configured, or it fails authentication


@dataclass(frozen=True)
class PendingRow:
    """A row as read, still on an old key: what the conditional update must find unchanged."""

    table: SealedTable
    id: str
    key_id: str
    ciphertexts: tuple[bytes | None, ...]


@dataclass
class RotationReport:
    rotated: int = 0
    skipped: int = 0
    unreadable: int = 0
    remaining: int = 0

    def count(self, outcome: Outcome) -> None:
        if outcome is Outcome.ROTATED:
            self.rotated += 1
        elif outcome is Outcome.SKIPPED:
            self.skipped += 1
        else:
            self.unreadable += 1

    def as_dict(self) -> dict[str, int]:
        # Unreadable rows are skipped too: they stay on their old key and count in ``remaining``.
        return {
            "rotated": self.rotated,
            "skipped": self.skipped + self.unreadable,
            "remaining": self.remaining,
        }


class KeyRotator:
    def __init__(
        self, session: AsyncSession, sealer: Sealer, *, batch_size: int = DEFAULT_BATCH_SIZE
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be positive")
        self.session = session
        self.sealer = sealer
        self.batch_size = batch_size
        self.rows = SealedRowRepository(session)

    async def remaining(self) -> int:
        """Rows of every sealed table whose secrets are not on the newest key."""
        total = 0
        for table in SEALED_TABLES:
            total += await self.rows.count_not_on(table.table, self.sealer.key_id)
        return total

    async def pending(
        self, table: SealedTable, *, after: str | None = None, limit: int | None = None
    ) -> list[PendingRow]:
        """The next rows on an old key, in primary-key order after ``after``."""
        rows = await self.rows.not_on(
            table.table,
            self.sealer.key_id,
            [c.column for c in table.columns],
            after=after,
            limit=limit or self.batch_size,
        )
        return [PendingRow(table, row[0], row[1], tuple(row[2:])) for row in rows]

    async def rotate_row(self, row: PendingRow) -> Outcome:
        """Re-seal one row with a conditional UPDATE (not committed: the caller batches)."""
        try:
            resealed = [
                None if blob is None else self._reseal(row, column, blob)
                for column, blob in zip(row.table.columns, row.ciphertexts, strict=True)
            ]
        except (DecryptionError, KeyConfigurationError):
            return Outcome.UNREADABLE
        names = [c.column for c in row.table.columns]
        won = await self.rows.reseal(
            row.table.table,
            row.id,
            (row.key_id, dict(zip(names, row.ciphertexts, strict=True))),
            (self.sealer.key_id, dict(zip(names, resealed, strict=True))),
        )
        return Outcome.ROTATED if won else Outcome.SKIPPED

    def _reseal(self, row: PendingRow, column: SealedColumn, blob: bytes) -> bytes:
        aad = associated_data(row.table.name, row.id, column.field)
        return self.sealer.seal(self.sealer.open(row.key_id, blob, aad), aad)

    async def run(self, progress: Progress | None = None) -> RotationReport:
        """Rotate every table; ``progress`` hears of each batch. Commits per batch."""
        report = RotationReport()
        for table in SEALED_TABLES:
            after: str | None = None
            while rows := await self.pending(table, after=after):
                # End the read before writing: on SQLite a write from an old read snapshot fails.
                await self.session.commit()
                for row in rows:
                    report.count(await self.rotate_row(row))
                await self.session.commit()
                after = rows[-1].id
                if progress is not None:
                    progress(len(rows))
        report.remaining = await self.remaining()
        return report
