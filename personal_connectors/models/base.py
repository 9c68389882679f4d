"""Declarative base and the column types every table shares."""

from __future__ import annotations

import secrets
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, MetaData, String
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id(prefix: str) -> str:
    """``<prefix>_`` followed by 32 hex characters, the id format of SPEC §1."""
    return f"{prefix}_{uuid.uuid4().hex}"


def new_time_ordered_ids(prefix: str, count: int = 1) -> list[str]:
    """``count`` ids of ``new_id``'s format that sort by creation time, for append-only tables
    (the audit trail): 12 hex digits of Unix milliseconds, then 80 random bits, the layout of a
    UUIDv7 (RFC 9562 §5.7).

    A random primary key puts every new row on a random page of its index, each rewritten to
    SQLite's write-ahead log at commit; these land on the index's last pages. Ids of one call
    share the millisecond and are sorted, so a batch is in order too.
    """
    millis = f"{time.time_ns() // 1_000_000:012x}"
    digits = secrets.token_hex(10 * count)
    return sorted(
        f"{prefix}_{millis}{digits[start : start + 20]}" for start in range(0, 20 * count, 20)
    )


# The longest id a request may name, in a path, a query or a body: longer ones are refused (or
# found to name nothing) before any query.
ID_MAX_LENGTH = 64


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON, list[str]: JSON}


class TimestampedMixin:
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


def id_column(length: int = 40) -> Mapped[str]:
    return mapped_column(String(length), primary_key=True)
