"""Which connections the background refresher works on, and claiming them without doubles.

A claim is one statement: ``UPDATE connections SET <lease> WHERE id IN (SELECT id … due …
LIMIT n FOR UPDATE SKIP LOCKED) RETURNING connections.*``. It takes the same refresh lease a
caller's refresh takes (``tokens.lease``), so a claimed connection is refreshed by exactly one
worker across every refresher, ``serve`` worker and instance; a crashed claimer's leases expire.
The row it returns is the one the refresh works from: read in the statement that took the lease,
it needs no second read. On PostgreSQL ``SKIP LOCKED`` lets any number of refreshers claim side by
side, each passing over the rows another is claiming; SQLite runs the statement under its single
write lock, which gives the same exclusivity (SQLAlchemy renders no ``FOR UPDATE`` there).

Two kinds of due rows are claimed by two statements, each a range of its own index read in the
index's order, which stops after ``n`` rows: tokens about to expire (``expiring``, soonest first,
on ``ix_connections_expires_at``) and refresh tokens left idle (``idle``, longest unused first,
on ``ix_connections_idle_since``). Read in the expiry order instead, the idle claim walked past
every connection that is not idle, which is nearly all of them. The refresher runs the idle claim
only when the first finds too little, and not again soon after it found nothing.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, func, not_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from personal_connectors.models import Connection, ConnectionStatus, OAuthApp
from personal_connectors.oauth.client import ClientCredentials
from personal_connectors.providers.schema import MINTING_MODES
from personal_connectors.tokens import lease

# When a connection's refresh token was last used: its last refresh, else its creation. The
# expression of ``ix_connections_idle_since``, written the same way so the index serves it.
IDLE_SINCE = func.coalesce(Connection.last_refreshed_at, Connection.created_at)

# A connection whose last attempt failed transiently waits this long before the next one,
# doubling per consecutive failure up to the cap (the provider is down: do not hammer it).
FIRST_BACKOFF_SECONDS = 30.0
MAX_BACKOFF_SECONDS = 3600.0


@dataclass(frozen=True)
class Claimed:
    """A connection whose refresh lease this refresher holds, as the claim returned it."""

    connection: Connection
    # Its OAuth app's credentials, read with the claim (None: no app, or it is gone).
    credentials: ClientCredentials | None = None

    @property
    def id(self) -> str:
        return self.connection.id

    @property
    def app_key(self) -> str:
        return self.connection.app_key

    @property
    def app_id(self) -> str | None:
        return self.connection.oauth_app_id

    def with_credentials(self, credentials: ClientCredentials | None) -> Claimed:
        return replace(self, credentials=credentials)

    async def credentials_of(self, app_id: str | None) -> ClientCredentials | None:
        """``tokens.refresh.CredentialsLookup`` over what the claim read."""
        return self.credentials if app_id is not None and app_id == self.app_id else None


@dataclass(frozen=True)
class DuePolicy:
    """When a connection is due, as of ``now``."""

    now: datetime
    window_seconds: float  # refresh tokens that expire within this
    idle_seconds: float  # and refresh tokens unused for this long
    refreshable: Collection[str]  # provider keys that support refresh (from the catalog)
    organization_id: str | None = None  # only this organization's connections, when set

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

    def _claimable(self) -> ColumnElement[bool]:
        """Live, not waiting for re-authorization, no lease held, not backing off."""
        scope = (
            []
            if self.organization_id is None
            else [Connection.organization_id == self.organization_id]
        )
        return and_(
            *scope,
            Connection.deleted_at.is_(None),
            Connection.status == ConnectionStatus.ACTIVE,
            lease.free(self.now),
            self._backoff_over(),
        )

    def _has_refresh_token(self) -> ColumnElement[bool]:
        """A refresh token and a client to send it with: an OAuth app of a provider that
        refreshes, or a custom MCP server's client registration (SPEC §11)."""
        return and_(
            Connection.refresh_token_ct.is_not(None),
            or_(
                and_(
                    Connection.oauth_app_id.is_not(None),
                    Connection.app_key.in_(sorted(self.refreshable)),
                ),
                Connection.mcp_registration_id.is_not(None),
            ),
        )

    def _can_refresh(self) -> ColumnElement[bool]:
        """A refresh token to refresh with, or credentials that mint a new token (SPEC §10)."""
        return or_(self._has_refresh_token(), Connection.auth_mode.in_(sorted(MINTING_MODES)))

    def expiring(self) -> ColumnElement[bool]:
        """Due by ``expires_at`` (within the window; an index range, soonest first) once past
        the token's half-life where its lifetime is known (``tokens.lifetime``): a short-lived
        token is refreshed once per lifetime, not on every pass."""
        horizon = self.now + timedelta(seconds=self.window_seconds)
        can_refresh = self._can_refresh()
        return and_(
            Connection.expires_at <= horizon,
            or_(Connection.refresh_due_at.is_(None), Connection.refresh_due_at <= self.now),
            self._claimable(),
            or_(
                # About to expire, and someone may ask for it (a disabled one hands none out).
                and_(can_refresh, Connection.is_active),
                # Expired and nothing to refresh with: record it now rather than at first use.
                and_(not_(can_refresh), Connection.expires_at <= self.now),
            ),
        )

    def idle(self) -> ColumnElement[bool]:
        """Idle: keep the grant alive where providers expire unused refresh tokens."""
        idle_since = self.now - timedelta(seconds=self.idle_seconds)
        last_used = IDLE_SINCE
        # (A minted token has no grant to keep alive.)
        return and_(self._claimable(), self._has_refresh_token(), last_used < idle_since)


class RefresherRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def claim(
        self,
        due: ColumnElement[bool],
        *,
        now: datetime,
        owner: str,
        lease_seconds: float,
        limit: int,
        order: ColumnElement[Any] | None = None,
        skip_providers: Collection[str] = (),
        skip_ids: Collection[str] = (),
    ) -> list[Claimed]:
        """Take the leases of up to ``limit`` connections matching ``due`` (``DuePolicy``'s
        ``expiring`` or ``idle``), lowest ``order`` first: ``expires_at`` (the default) for
        ``expiring``, ``IDLE_SINCE`` for ``idle`` (the index each is a range of); the caller
        commits."""
        chosen = select(Connection.id).where(due)
        if skip_providers:
            chosen = chosen.where(Connection.app_key.not_in(sorted(skip_providers)))
        if skip_ids:
            chosen = chosen.where(Connection.id.not_in(sorted(skip_ids)))
        # By the index's expression alone, in the index's order (SQLite adds its rowid, not
        # our id), so the scan stops after `limit` rows.
        by = Connection.expires_at.asc() if order is None else order.asc()
        chosen = chosen.order_by(by).limit(limit).with_for_update(skip_locked=True)
        statement = (
            update(Connection)
            .where(Connection.id.in_(chosen.scalar_subquery()))
            .values(
                **lease.taken(owner, now, lease_seconds),
                updated_at=Connection.updated_at,  # a claim changes nothing a user sees
            )
            .returning(Connection)
            .execution_options(synchronize_session=False, populate_existing=True)
        )
        connections = (await self.session.scalars(statement)).all()
        return [Claimed(connection) for connection in connections]

    async def backlog(
        self, due: ColumnElement[bool]
    ) -> tuple[int, tuple[datetime, datetime | None] | None]:
        """How many connections match ``due`` and no one has claimed, and the soonest-expiring
        one's ``expires_at`` and ``refresh_due_at`` (the metrics' queue depth and lag)."""
        count = await self.session.scalar(select(func.count()).where(due))
        soonest = (
            await self.session.execute(
                select(Connection.expires_at, Connection.refresh_due_at)
                .where(due)
                .order_by(Connection.expires_at.asc())
                .limit(1)
            )
        ).first()
        if soonest is None or soonest[0] is None:
            return int(count or 0), None
        return int(count or 0), (soonest[0], soonest[1])

    async def apps(self, app_ids: Collection[str]) -> list[OAuthApp]:
        """The OAuth apps of claimed rows, in one query per claim rather than one per refresh."""
        if not app_ids:
            return []
        statement = select(OAuthApp).where(OAuthApp.id.in_(sorted(app_ids)))
        return list((await self.session.scalars(statement)).all())
