"""The per-connection refresh lease in the database: at most one refresher across every worker
process and instance sharing the database.

Taking it is one conditional UPDATE (atomic on SQLite and PostgreSQL alike); the holder releases
it with its compare-and-swap write, and a holder that died releases it by letting it expire.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import or_, update
from sqlalchemy.ext.asyncio import AsyncSession

from personal_connectors.models import Connection, utcnow

PROCESS_ID = uuid.uuid4().hex[:12]


def new_owner() -> str:
    return f"{PROCESS_ID}-{uuid.uuid4().hex[:12]}"


async def try_acquire(
    session: AsyncSession, connection_id: str, owner: str, seconds: float
) -> bool:
    """Take the lease; ``seconds`` must outlast the whole bounded refresh (retries included)."""
    now = utcnow()
    result = await session.execute(
        update(Connection)
        .where(
            Connection.id == connection_id,
            or_(Connection.refresh_lease_until.is_(None), Connection.refresh_lease_until < now),
        )
        .values(refresh_lease_owner=owner, refresh_lease_until=now + timedelta(seconds=seconds))
        .execution_options(synchronize_session=False)
    )
    await session.commit()
    return bool(getattr(result, "rowcount", 0) == 1)


async def release(session: AsyncSession, connection_id: str, owner: str) -> None:
    await session.execute(
        update(Connection)
        .where(Connection.id == connection_id, Connection.refresh_lease_owner == owner)
        .values(refresh_lease_owner=None, refresh_lease_until=None)
        .execution_options(synchronize_session=False)
    )
    await session.commit()
