"""Which connections the background refresher works on, and claiming them without doubles.

A claim is one statement: ``UPDATE connections SET <lease> WHERE id IN (SELECT id … due …
LIMIT n FOR UPDATE SKIP LOCKED) RETURNING id, version, app_key``. It takes the same refresh lease
a caller's refresh takes (``tokens.lease``), so a claimed connection is refreshed by exactly one
worker across every refresher, ``serve`` worker and instance; a crashed claimer's leases expire.
On PostgreSQL ``SKIP LOCKED`` lets any number of refreshers claim side by side, each passing over
the rows another is claiming; SQLite runs the statement under its single write lock, which gives
the same exclusivity (SQLAlchemy renders no ``FOR UPDATE`` there).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, func, not_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from personal_connectors.models import Connection, ConnectionStatus

# A connection whose last attempt failed transiently waits this long before the next one,
# doubling per consecutive failure up to the cap (the provider is down: do not hammer it).
FIRST_BACKOFF_SECONDS = 30.0
MAX_BACKOFF_SECONDS = 3600.0


@dataclass(frozen=True)
class Claimed:
    """A connection whose refresh lease this refresher holds, as of ``version``."""

    id: str
    version: int
    app_key: str


@dataclass(frozen=True)
class DuePolicy:
    """When a connection is due, as of ``now``."""

    now: datetime
    window_seconds: float  # refresh tokens that expire within this
    idle_seconds: float  # and refresh tokens unused for this long
    refreshable: Collection[str]  # provider keys that support refresh (from the catalog)

    def backoff_seconds(self, failures: int) -> float:
        return min(FIRST_BACKOFF_SECONDS * 2.0 ** (failures - 1), MAX_BACKOFF_SECONDS)

    def _backoff_over(self) -> ColumnElement[bool]:
        """No transient failure, or the last one (``updated_at``) is older than its backoff."""
        failures = Connection.refresh_failures
        tiers: list[ColumnElement[bool]] = [failures == 0]
        n = 1
        while self.backoff_seconds(n) < MAX_BACKOFF_SECONDS:
            cutoff = self.now - timedelta(seconds=self.backoff_seconds(n))
            tiers.append(and_(failures == n, Connection.updated_at < cutoff))
            n += 1
        cap = self.now - timedelta(seconds=MAX_BACKOFF_SECONDS)
        tiers.append(and_(failures >= n, Connection.updated_at < cap))
        return or_(*tiers)

    def condition(self) -> ColumnElement[bool]:
        horizon = self.now + timedelta(seconds=self.window_seconds)
        idle_since = self.now - timedelta(seconds=self.idle_seconds)
        can_refresh = and_(
            Connection.refresh_token_ct.is_not(None),
            Connection.oauth_app_id.is_not(None),
            Connection.app_key.in_(sorted(self.refreshable)),
        )
        last_refresh = func.coalesce(Connection.last_refreshed_at, Connection.created_at)
        return and_(
            Connection.deleted_at.is_(None),
            Connection.status == ConnectionStatus.ACTIVE,
            or_(
                Connection.refresh_lease_until.is_(None),
                Connection.refresh_lease_until < self.now,
            ),
            self._backoff_over(),
            or_(
                # About to expire, and someone may ask for it (a disabled one hands none out).
                and_(can_refresh, Connection.is_active, Connection.expires_at <= horizon),
                # Idle: keep the grant alive where providers expire unused refresh tokens.
                and_(can_refresh, last_refresh < idle_since),
                # Expired and nothing to refresh with: record it now rather than at first use.
                and_(not_(can_refresh), Connection.expires_at <= self.now),
            ),
        )


class RefresherRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def claim(
        self,
        policy: DuePolicy,
        *,
        owner: str,
        lease_seconds: float,
        limit: int,
        skip_providers: Collection[str] = (),
        skip_ids: Collection[str] = (),
    ) -> list[Claimed]:
        """Take the leases of up to ``limit`` due connections, soonest expiry first; commits."""
        due = select(Connection.id).where(policy.condition())
        if skip_providers:
            due = due.where(Connection.app_key.not_in(sorted(skip_providers)))
        if skip_ids:
            due = due.where(Connection.id.not_in(sorted(skip_ids)))
        due = (
            due.order_by(Connection.expires_at.asc().nulls_last(), Connection.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        statement = (
            update(Connection)
            .where(Connection.id.in_(due.scalar_subquery()))
            .values(
                refresh_lease_owner=owner,
                refresh_lease_until=policy.now + timedelta(seconds=lease_seconds),
                updated_at=Connection.updated_at,  # a claim changes nothing a user sees
            )
            .returning(Connection.id, Connection.version, Connection.app_key)
            .execution_options(synchronize_session=False)
        )
        rows = (await self.session.execute(statement)).all()
        await self.session.commit()
        return [Claimed(row.id, row.version, row.app_key) for row in rows]

    async def count_due(self, policy: DuePolicy) -> int:
        statement = select(func.count()).select_from(Connection).where(policy.condition())
        return int((await self.session.execute(statement)).scalar_one())
