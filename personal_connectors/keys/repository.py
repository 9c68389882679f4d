"""Database access for key rotation: the rows of a sealed table still on an old key, and the
conditional update that re-seals one only if it is still as it was read."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import CursorResult, Table, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession


class SealedRowRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def count_not_on(self, table: Table, key_id: str) -> int:
        statement = select(func.count()).select_from(table).where(table.c.key_id != key_id)
        return int((await self.session.execute(statement)).scalar_one())

    async def not_on(
        self, table: Table, key_id: str, columns: Sequence[str], *, after: str | None, limit: int
    ) -> list[tuple[Any, ...]]:
        """Rows (id, key id, then ``columns``) not on ``key_id``, in primary-key order after
        ``after``."""
        c = table.c
        statement = (
            select(c.id, c.key_id, *(c[name] for name in columns))
            .where(c.key_id != key_id)
            .order_by(c.id)
            .limit(limit)
        )
        if after is not None:
            statement = statement.where(c.id > after)
        return [tuple(row) for row in await self.session.execute(statement)]

    async def reseal(
        self,
        table: Table,
        row_id: str,
        read: tuple[str, dict[str, bytes | None]],
        written: tuple[str, dict[str, bytes | None]],
    ) -> bool:
        """Replace a row's key id and ciphertexts as ``read`` by those ``written``, only if the
        row still holds exactly what was read (not committed); True when it did."""
        c = table.c
        (old_key, old_blobs), (new_key, new_blobs) = read, written
        unchanged = [c.id == row_id, c.key_id == old_key]
        unchanged += [c[name].is_not_distinct_from(blob) for name, blob in old_blobs.items()]
        values: dict[str, Any] = {"key_id": new_key, **new_blobs}
        if "updated_at" in c:
            # Re-encryption changes nothing a user sees; keep the row's updated_at as it was.
            values["updated_at"] = c.updated_at
        result = await self.session.execute(update(table).where(*unchanged).values(values))
        return cast(CursorResult[Any], result).rowcount == 1
