"""Keyset paging of newest-first lists: the page size rules and the opaque ``after`` cursor.

A cursor names the last row of a page by its position in the list's order — ``created_at``
then ``id``, both descending — rather than by an offset, so rows added or deleted while a
caller pages through move no other row onto a page twice or off every page. It is only the
position: a cursor stays valid after its row is deleted. Shared by every list that pages the
same way (SPEC §8: ``GET /`` and ``GET /end-users``).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, and_, or_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import QueryableAttribute

from personal_connectors.exceptions import ValidationFailed
from personal_connectors.models import ID_MAX_LENGTH

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
# Longer than any cursor ``encode`` makes (an ISO time, a separator and an id, in base64).
CURSOR_MAX_LENGTH = 160

_SEPARATOR = "|"
_INVALID_CURSOR = (
    "`after` is not a cursor this list gave out. Follow the URL in the previous page's "
    '`Link: <…>; rel="next"` header, or leave `after` out to start from the newest.'
)


@dataclass(frozen=True)
class Cursor:
    """The position after which a page starts: the previous page's last row."""

    created_at: datetime
    id: str

    def encode(self) -> str:
        text = f"{self.created_at.isoformat()}{_SEPARATOR}{self.id}"
        return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, value: str) -> Cursor:
        """The cursor ``encode`` made; anything else is 400 naming ``after``."""
        try:
            if len(value) > CURSOR_MAX_LENGTH:
                raise ValueError("too long")
            raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
            when, separator, row_id = raw.decode().partition(_SEPARATOR)
            created_at = datetime.fromisoformat(when)
            if not separator or not row_id or len(row_id) > ID_MAX_LENGTH:
                raise ValueError("no row id")
            if created_at.tzinfo is None:
                raise ValueError("no UTC offset")
        except (ValueError, binascii.Error):  # UnicodeDecodeError is a ValueError
            raise ValidationFailed.for_fields(_INVALID_CURSOR, "after") from None
        return cls(created_at, row_id)


@dataclass(frozen=True)
class PageRequest:
    limit: int = DEFAULT_PAGE_SIZE
    after: Cursor | None = None


T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of rows and the cursor of the next page (None on the last page)."""

    items: list[T]
    next: Cursor | None


async def read_page(
    session: AsyncSession,
    statement: Select[Any],
    created_at: QueryableAttribute[datetime],
    row_id: QueryableAttribute[str],
    page: PageRequest | None,
) -> Page[Any]:
    """``statement``'s rows newest first (``created_at``, then ``row_id``, both descending): one
    page of them when ``page`` is given, else all. A page is read one row long: the extra row
    only says that a next page exists; the cursor is the last returned row's position."""
    if page is not None and page.after is not None:
        after = page.after
        statement = statement.where(
            or_(
                created_at < after.created_at,
                and_(created_at == after.created_at, row_id < after.id),
            )
        )
    statement = statement.order_by(created_at.desc(), row_id.desc())
    if page is not None:
        statement = statement.limit(page.limit + 1)
    rows = list((await session.execute(statement)).scalars().all())
    if page is None or len(rows) <= page.limit:
        return Page(rows, None)
    del rows[page.limit :]
    return Page(rows, Cursor(rows[-1].created_at, rows[-1].id))
