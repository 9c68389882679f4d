"""The per-connection refresh lease in the database: at most one refresher across every worker
process and instance sharing the database. This module is the lease's repository: every
statement that takes, renews or gives it back is here.

Taking it is one conditional UPDATE (atomic on SQLite and PostgreSQL alike). Leases are short
and renewed every third of their life while their holder lives (``kept``), so a refresh may
take longer than one lease, and a holder killed with ``kill -9`` is taken over within a lease's
life. The holder gives it back with its compare-and-swap write or ``release``.

Taking a lease also marks an attempt (``refresh_attempt_at``): its holder may send the refresh
token. An attempt still marked when the next holder takes the lease was never concluded (its
holder died, maybe after the provider rotated the token), so taking it over moves the mark to
``rotation_uncertain_since`` in the same statement (SET expressions read the row as it was).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, case, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from personal_connectors.models import Connection, utcnow

logger = logging.getLogger(__name__)

PROCESS_ID = uuid.uuid4().hex[:12]
# A lease is renewed this many times per life, so one late renewal does not lose it.
RENEWALS_PER_LIFE = 3


def new_owner() -> str:
    return f"{PROCESS_ID}-{uuid.uuid4().hex[:12]}"


def free(now: datetime) -> ColumnElement[bool]:
    """No lease is held on the row, or the one held has expired."""
    return or_(Connection.refresh_lease_until.is_(None), Connection.refresh_lease_until < now)


def taken(owner: str, now: datetime, seconds: float) -> Mapping[str, Any]:
    """The SET values that give the lease to ``owner`` (also used by the refresher's claim)."""
    left_over = Connection.refresh_attempt_at
    return {
        "refresh_lease_owner": owner,
        "refresh_lease_until": now + timedelta(seconds=seconds),
        "rotation_uncertain_since": case(
            (left_over.is_not(None), func.coalesce(Connection.rotation_uncertain_since, left_over)),
            else_=Connection.rotation_uncertain_since,
        ),
        "refresh_attempt_at": now,
    }


async def try_acquire(
    session: AsyncSession, connection_id: str, owner: str, seconds: float
) -> bool:
    """Take the lease if it is free; its holder keeps it with ``kept``."""
    now = utcnow()
    result = await session.execute(
        update(Connection)
        .where(Connection.id == connection_id, free(now))
        .values(taken(owner, now, seconds))
        .execution_options(synchronize_session=False)
    )
    await session.commit()
    return bool(getattr(result, "rowcount", 0) == 1)


async def release(
    session: AsyncSession, connection_id: str, owner: str, *, uncertain: bool = False
) -> None:
    """Give the lease back. ``uncertain``: the attempt was sent and its outcome is unknown (a
    timeout or reset after sending, or a refresh cancelled mid-request), so the row says since
    when the refresh token may have been rotated."""
    values: dict[str, Any] = {
        "refresh_lease_owner": None,
        "refresh_lease_until": None,
        "refresh_attempt_at": None,
    }
    if uncertain:
        values["rotation_uncertain_since"] = func.coalesce(
            Connection.rotation_uncertain_since, Connection.refresh_attempt_at, utcnow()
        )
    await session.execute(
        update(Connection)
        .where(Connection.id == connection_id, Connection.refresh_lease_owner == owner)
        .values(values)
        .execution_options(synchronize_session=False)
    )
    await session.commit()


async def renew(
    session: AsyncSession, owner: str, seconds: float, connection_id: str | None = None
) -> int:
    """Extend the leases ``owner`` holds (one, or all of a background refresher's); how many.

    Rows another transaction has locked are skipped (``SKIP LOCKED`` on PostgreSQL): they are
    being written, and the write gives the lease back. Waiting for them instead, while holding
    locks on others, would deadlock with a batch of writes locking rows in id order.
    """
    held = select(Connection.id).where(Connection.refresh_lease_owner == owner)
    if connection_id is not None:
        held = held.where(Connection.id == connection_id)
    until = utcnow() + timedelta(seconds=seconds)
    result = await session.execute(
        update(Connection)
        .where(
            Connection.id.in_(held.with_for_update(skip_locked=True).scalar_subquery()),
            Connection.refresh_lease_owner == owner,
        )
        .values(refresh_lease_until=until)
        .execution_options(synchronize_session=False)
    )
    await session.commit()
    return int(getattr(result, "rowcount", 0))


@contextlib.asynccontextmanager
async def kept(
    sessions: async_sessionmaker[AsyncSession],
    owner: str,
    seconds: float,
    connection_id: str | None = None,
) -> AsyncIterator[None]:
    """Renew ``owner``'s lease (or all its leases) every third of its life while the block runs.

    The renewals stop when the block ends, never in the middle of a statement: a renewal that
    fails is logged and tried again at the next turn (the lease outlives two missed ones).
    """
    stop = asyncio.Event()

    async def renew_until_stopped() -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), seconds / RENEWALS_PER_LIFE)
            if stop.is_set():
                return
            try:
                async with sessions() as session:
                    await renew(session, owner, seconds, connection_id)
            except Exception:
                logger.exception("renewing refresh lease %s failed; trying again", owner)

    renewer = asyncio.create_task(renew_until_stopped())
    try:
        yield
    finally:
        stop.set()
        await asyncio.shield(renewer)
