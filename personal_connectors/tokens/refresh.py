"""Refreshing one connection's token exactly once, however many workers ask.

Three layers, each for a reason:
1. an in-process single flight, so concurrent callers in one worker share one attempt;
2. a lease row-lock in the database (``tokens.lease``), so one worker across all processes and
   instances talks to the provider, and the others wait for its result;
3. a re-read after taking the lease and a compare-and-swap write on ``version``, so a refresh
   that someone else already finished is not repeated and no write is lost.

The rotated refresh token is committed before the new access token is handed to anyone, and a
provider that sends no new refresh token leaves the old one in place (``TokenVault.sealed``).
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_delay,
    wait_random_exponential,
)

from personal_connectors.apps.service import OAuthAppService
from personal_connectors.connections.events import EventType
from personal_connectors.connections.repository import ConnectionRepository
from personal_connectors.exceptions import ProviderError
from personal_connectors.models import Connection, ConnectionStatus, utcnow
from personal_connectors.oauth.client import OAuthClient, TokenGrant
from personal_connectors.oauth.errors import (
    ProviderBadAnswer,
    ProviderFailure,
    ProviderRejected,
    ProviderUnreachable,
)
from personal_connectors.providers.gateway import client_for
from personal_connectors.providers.schema import ProviderEntry
from personal_connectors.runtime import Runtime
from personal_connectors.tokens import lease
from personal_connectors.tokens.exceptions import (
    ReauthorizationRequired,
    RefreshContended,
    TokenUnavailable,
)
from personal_connectors.tokens.vault import TokenVault

logger = logging.getLogger(__name__)

# How long a caller waits for another worker's refresh before giving up with a 503.
WAIT_FOR_OTHERS_SECONDS = 30.0
POLL_SECONDS = 0.05


@dataclass(frozen=True)
class FreshToken:
    access_token: str
    token_type: str
    expires_at: datetime | None
    scopes: list[str]
    # True only for a token this call obtained from the provider (the background refresher
    # counts its work by it); a token served as it was, or another worker's result, is False.
    refreshed: bool = False


def needs_refresh(connection: Connection, entry: ProviderEntry | None, now: datetime) -> bool:
    if connection.expires_at is None:
        return False  # a token that does not expire (GitHub OAuth apps) is always current
    margin = entry.refresh_margin if entry is not None else 300
    return connection.expires_at <= now + timedelta(seconds=margin)


class Refresher:
    """Refreshes tokens; one per request or job, sharing the runtime's single-flight table."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.vault = TokenVault(runtime.sealer)

    def current(self, connection: Connection) -> FreshToken:
        token = self.vault.access_token(connection)
        if token is None:
            raise ReauthorizationRequired("The connection holds no access token.")
        return FreshToken(
            token, connection.token_type, connection.expires_at, list(connection.scopes or [])
        )

    async def refresh(self, connection: Connection, *, force: bool = False) -> FreshToken:
        """A token newer than ``connection``'s version, or the current one if still fresh."""
        seen_version = connection.version
        token: FreshToken = await self.runtime.refresh_flights.run(
            connection.id, lambda: self._refresh_across_workers(connection.id, seen_version, force)
        )
        return token

    async def refresh_claimed(self, connection_id: str, seen: int, owner: str) -> FreshToken:
        """Refresh under a lease ``owner`` already holds, taken at ``seen`` version.

        The background refresher claims due connections many at a time by taking their leases
        in one statement (``refresher.repository``); each is then refreshed here with the same
        re-read, compare-and-swap and failure classes as a caller's refresh. Not through the
        single flight: an in-process caller waiting there polls the row, and our write ends it.
        """
        async with self.runtime.sessions() as session:
            return await self._as_leader(session, connection_id, seen, True, owner)

    async def _refresh_across_workers(
        self, connection_id: str, seen: int, force: bool
    ) -> FreshToken:
        owner = lease.new_owner()
        deadline = time.monotonic() + WAIT_FOR_OTHERS_SECONDS
        while True:
            async with self.runtime.sessions() as session:
                if await lease.try_acquire(
                    session, connection_id, owner, self.runtime.settings.refresh_lease_seconds
                ):
                    return await self._as_leader(session, connection_id, seen, force, owner)
                connection = await session.get(Connection, connection_id)
                if connection is None:
                    raise ReauthorizationRequired("The connection no longer exists.")
                if connection.version != seen:
                    # Another worker refreshed (and committed) while we waited: use its result.
                    self._raise_if_unusable(connection)
                    return self.current(connection)
            if time.monotonic() > deadline:
                raise RefreshContended(
                    "Another worker is still refreshing this token.", headers={"Retry-After": "2"}
                )
            await asyncio.sleep(POLL_SECONDS * (1 + random.random()))  # noqa: S311 (jitter)

    async def _as_leader(
        self, session: AsyncSession, connection_id: str, seen: int, force: bool, owner: str
    ) -> FreshToken:
        stored = False
        try:
            session.expire_all()
            connection = await session.get(Connection, connection_id)
            if connection is None:
                raise ReauthorizationRequired("The connection no longer exists.")
            self._raise_if_unusable(connection)
            entry = self.runtime.catalog.get(connection.app_key)
            stale = needs_refresh(connection, entry, utcnow())
            if connection.version != seen or not (stale or force):
                return self.current(connection)  # someone else refreshed, or nothing to do
            token = await self._refresh_at_provider(session, connection, entry, owner)
            stored = token.refreshed
            return token
        finally:
            if not stored:  # a stored token's compare-and-swap write already cleared the lease
                await lease.release(session, connection_id, owner)

    def _raise_if_unusable(self, connection: Connection) -> None:
        if connection.status == ConnectionStatus.NEEDS_REAUTH:
            raise ReauthorizationRequired(
                connection.status_reason or "The provider rejected the refresh token."
            )

    async def _refresh_at_provider(
        self, session: AsyncSession, connection: Connection, entry: ProviderEntry | None, owner: str
    ) -> FreshToken:
        refresh_token = self.vault.refresh_token(connection)
        resolved = await OAuthAppService(session, self.runtime.sealer, self.runtime.catalog).by_id(
            connection.oauth_app_id
        )
        if entry is None or resolved is None or refresh_token is None or not entry.supports_refresh:
            return await self._cannot_refresh(session, connection)
        client = await client_for(
            self.runtime, entry, connection.integration_params, resolved.credentials
        )
        try:
            grant = await self._call_with_retries(
                client, refresh_token, list(connection.scopes or [])
            )
        except ProviderRejected as exc:
            if exc.is_terminal:
                await self._mark_needs_reauth(session, connection, exc)
                raise ReauthorizationRequired(
                    f"The provider rejected the refresh token ({exc.error})."
                ) from None
            return await self._transient_failure(session, connection, exc)
        except ProviderFailure as exc:
            return await self._transient_failure(session, connection, exc)
        return await self._store(session, connection, grant, owner)

    async def _call_with_retries(
        self, client: OAuthClient, refresh_token: str, scopes: list[str]
    ) -> TokenGrant:
        retrying = AsyncRetrying(
            retry=retry_if_exception_type((ProviderUnreachable, ProviderBadAnswer)),
            wait=wait_random_exponential(multiplier=0.2, max=2.0),
            stop=stop_after_delay(self.runtime.settings.refresh_retry_seconds),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await client.refresh(refresh_token, current_scopes=scopes)
        raise AssertionError("unreachable")  # reraise=True re-raises the last failure

    async def _store(
        self, session: AsyncSession, connection: Connection, grant: TokenGrant, owner: str
    ) -> FreshToken:
        """Compare-and-swap: write only over the version we read, then release the lease."""
        now = utcnow()
        recovered = connection.refresh_failures > 0
        values = self.vault.sealed(connection, grant)
        result = await session.execute(
            update(Connection)
            .where(
                Connection.id == connection.id,
                Connection.version == connection.version,
                Connection.refresh_lease_owner == owner,
            )
            .values(
                **values,
                scopes=grant.scopes or connection.scopes,
                version=connection.version + 1,
                status=ConnectionStatus.ACTIVE,
                status_reason=None,
                refresh_failures=0,
                last_refreshed_at=now,
                last_sync_at=now,
                updated_at=now,
                refresh_lease_owner=None,
                refresh_lease_until=None,
            )
            .execution_options(synchronize_session=False)
        )
        if getattr(result, "rowcount", 0) != 1:
            await session.rollback()
            # Only possible if our lease expired mid-refresh; the other writer's token wins.
            logger.error("refresh of %s lost its compare-and-swap", connection.id)
            raise ProviderError("The token changed while it was being refreshed; retry.")
        events = ConnectionRepository(session)
        events.record(connection, EventType.REFRESHED, expires_at=str(grant.expires_at))
        if recovered:
            events.record(
                connection, EventType.RECOVERED, after_failures=connection.refresh_failures
            )
        await session.commit()
        return FreshToken(
            grant.access_token,
            grant.token_type,
            grant.expires_at,
            list(grant.scopes or connection.scopes or []),
            refreshed=True,
        )

    async def _mark_needs_reauth(
        self, session: AsyncSession, connection: Connection, failure: ProviderRejected
    ) -> None:
        connection.status = ConnectionStatus.NEEDS_REAUTH
        connection.status_reason = f"{failure.error}: {failure.description or 'refresh rejected'}"[
            :500
        ]
        connection.refresh_failures += 1
        connection.updated_at = utcnow()
        ConnectionRepository(session).record(
            connection, EventType.REFRESH_FAILED, error=failure.error, terminal=True
        )
        await session.commit()
        logger.warning("connection %s needs re-authorization (%s)", connection.id, failure.error)

    async def _transient_failure(
        self, session: AsyncSession, connection: Connection, failure: ProviderFailure
    ) -> FreshToken:
        """The provider is down or confused: keep the status, serve what is still valid."""
        connection.refresh_failures += 1
        ConnectionRepository(session).record(
            connection, EventType.REFRESH_FAILED, error=type(failure).__name__, terminal=False
        )
        await session.commit()
        logger.warning("refresh of %s failed transiently: %s", connection.id, failure)
        now = utcnow()
        if connection.expires_at is not None and connection.expires_at > now:
            return self.current(connection)
        retry_after = getattr(failure, "retry_after", None) or 5
        if isinstance(failure, ProviderBadAnswer):
            raise ProviderError("The provider answered the refresh with something unusable.")
        raise TokenUnavailable(
            "The provider could not refresh the token and the current one has expired.",
            headers={"Retry-After": str(math.ceil(retry_after))},
        )

    async def _cannot_refresh(self, session: AsyncSession, connection: Connection) -> FreshToken:
        """No refresh token (or the provider has none): fine until the access token expires."""
        if connection.expires_at is None or connection.expires_at > utcnow():
            return self.current(connection)
        connection.status = ConnectionStatus.NEEDS_REAUTH
        connection.status_reason = "The access token expired and there is no refresh token."
        ConnectionRepository(session).record(
            connection, EventType.REFRESH_FAILED, error="no_refresh_token", terminal=True
        )
        await session.commit()
        raise ReauthorizationRequired(connection.status_reason)
