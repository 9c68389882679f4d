"""Refreshing one connection's token exactly once, however many workers ask.

Three layers, each for a reason:
1. an in-process single flight, so concurrent callers in one worker share one attempt;
2. a lease row-lock in the database (``tokens.lease``), so one worker across all processes and
   instances talks to the provider, and the others wait for its result;
3. a re-read after taking the lease and a compare-and-swap write on ``version``, so a refresh
   that someone else already finished is not repeated and no write is lost.

The rotated refresh token is committed before the new access token is handed to anyone, and a
provider that sends no new refresh token leaves the old one in place (``TokenVault.sealed``).

The background refresher runs the same leader code (``refresh_claimed``) on rows it claimed many
at a time; only where the row comes from and how the write is committed differ: its claim's
``RETURNING`` row is the read after taking the lease, and its writes are committed many to a
transaction (``write_tokens``, the one place a refreshed grant is stored).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import ARRAY, Table, Update, any_, bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_delay,
    wait_random_exponential,
)

from personal_connectors.apps.gateway import client_for
from personal_connectors.apps.service import OAuthAppService
from personal_connectors.events.repository import EventRepository, event_row
from personal_connectors.events.types import EventType
from personal_connectors.exceptions import ProviderError
from personal_connectors.models import Connection, ConnectionEvent, ConnectionStatus, utcnow
from personal_connectors.oauth.client import ClientCredentials, OAuthClient, TokenGrant
from personal_connectors.oauth.errors import (
    ProviderBadAnswer,
    ProviderFailure,
    ProviderRejected,
    ProviderUnreachable,
)
from personal_connectors.providers.schema import ProviderEntry
from personal_connectors.runtime import Runtime
from personal_connectors.tokens import lease
from personal_connectors.tokens.exceptions import (
    ReauthorizationRequired,
    RefreshContended,
    TokenUnavailable,
)
from personal_connectors.tokens.records import ConnectionLike
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


@dataclass(frozen=True)
class TokenWrite:
    """A refreshed grant to store: one row's compare-and-swap update and its audit events."""

    connection_id: str
    version: int  # the version the refresh read; the write happens only over it
    owner: str  # the lease the refresh ran under; the write releases it
    values: Mapping[str, Any]
    events: Sequence[Mapping[str, Any]]  # connection_events rows (never a token)


# Commits a write and says whether its compare-and-swap won: the token path commits each at once
# (``write_tokens`` on its session), the background refresher many to a transaction.
TokenWriter = Callable[[TokenWrite], Awaitable[bool]]
# An OAuth app's credentials by id; None for an app that is gone.
CredentialsLookup = Callable[[str | None], Awaitable[ClientCredentials | None]]


async def write_tokens(session: AsyncSession, writes: Sequence[TokenWrite]) -> list[bool]:
    """Store ``writes`` in one transaction on ``session`` and commit; per write, whether it won.

    Each row is written only over the version its refresh read and only under its lease, so a
    write that lost (possible only once a lease expired mid-refresh) changes nothing; the events
    of the writes that won are inserted with them, and their webhook deliveries join the same
    transaction (``EventRepository.enqueue_rows``). Core statements built once: no unit of work
    is needed, and the ORM's per-statement overhead was a tenth of a background refresh's CPU.
    """
    if not writes:
        return []
    connection = await session.connection()
    statement = _compare_and_swap(tuple(writes[0].values))
    params = [
        {"cas_id": w.connection_id, "cas_version": w.version, "cas_owner": w.owner, **w.values}
        for w in writes
    ]
    stored: list[bool] | None = None
    if len(params) > 1 and connection.dialect.supports_sane_multi_rowcount:
        # One executemany (SQLite); its total count proves every write won, the usual case.
        if (await connection.execute(statement, params)).rowcount == len(params):
            stored = [True] * len(params)
        else:
            await session.rollback()  # someone lost: redo one by one to learn who
            connection = await session.connection()
    elif len(params) > 1:
        # PostgreSQL (asyncpg reports no per-row counts for an executemany): lock the rows and
        # learn the winners in one statement, then write the winners in one executemany.
        stored = await _lock_unchanged(connection, writes)
        winners = [row for row, won in zip(params, stored, strict=True) if won]
        if winners:
            await connection.execute(statement, winners)
    if stored is None:
        stored = [(await connection.execute(statement, row)).rowcount == 1 for row in params]
    events = [row for write, won in zip(writes, stored, strict=True) if won for row in write.events]
    if events:
        await connection.execute(insert(_EVENTS), events)
        await EventRepository(session).enqueue_rows(events)
    await session.commit()
    return stored


_CONNECTIONS = cast(Table, Connection.__table__)
_EVENTS = cast(Table, ConnectionEvent.__table__)


async def _lock_unchanged(connection: AsyncConnection, writes: Sequence[TokenWrite]) -> list[bool]:
    """Per write, whether its compare-and-swap will win, its row locked until the commit.

    ``SELECT … FOR UPDATE`` waits for a concurrent writer and then reads its committed row, so a
    row still at the version and lease owner the refresh read cannot change before this
    transaction's ``UPDATE`` (which keeps its own compare-and-swap condition all the same). Rows
    are locked in id order, so two batches cannot deadlock; the statement's text does not depend
    on the batch's size (one array parameter), so each connection prepares it once.
    """
    ids = [write.connection_id for write in writes]
    current = {
        row.id: (row.version, row.refresh_lease_owner)
        for row in await connection.execute(_LOCK_ROWS, {"ids": ids})
    }
    won: list[bool] = []
    for write in writes:
        # A second write of one row in a batch would find the first one's version: it loses.
        won.append(current.pop(write.connection_id, None) == (write.version, write.owner))
    return won


_LOCK_ROWS = (
    select(_CONNECTIONS.c.id, _CONNECTIONS.c.version, _CONNECTIONS.c.refresh_lease_owner)
    .where(_CONNECTIONS.c.id == any_(bindparam("ids", type_=ARRAY(_CONNECTIONS.c.id.type))))
    .order_by(_CONNECTIONS.c.id)
    .with_for_update()
)


@functools.cache
def _compare_and_swap(columns: tuple[str, ...]) -> Update:
    """``UPDATE connections SET <columns> WHERE id, version and lease owner are as read``."""
    table = _CONNECTIONS
    return (
        update(table)
        .where(
            table.c.id == bindparam("cas_id"),
            table.c.version == bindparam("cas_version"),
            table.c.refresh_lease_owner == bindparam("cas_owner"),
        )
        .values({name: bindparam(name, type_=table.c[name].type) for name in columns})
    )


def needs_refresh(connection: ConnectionLike, entry: ProviderEntry | None, now: datetime) -> bool:
    if connection.expires_at is None:
        return False  # a token that does not expire (GitHub OAuth apps) is always current
    margin = entry.refresh_margin if entry is not None else 300
    return connection.expires_at <= now + timedelta(seconds=margin)


class Refresher:
    """Refreshes tokens; one per request or job, sharing the runtime's single-flight table."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.vault = TokenVault(runtime.sealer)

    def current(self, connection: ConnectionLike) -> FreshToken:
        token = self.vault.access_token(connection)
        if token is None:
            raise ReauthorizationRequired("The connection holds no access token.")
        return FreshToken(
            token, connection.token_type, connection.expires_at, list(connection.scopes or [])
        )

    async def refresh(self, connection: ConnectionLike, *, force: bool = False) -> FreshToken:
        """A token newer than ``connection``'s version, or the current one if still fresh."""
        seen_version = connection.version
        token: FreshToken = await self.runtime.refresh_flights.run(
            connection.id, lambda: self._refresh_across_workers(connection.id, seen_version, force)
        )
        return token

    async def refresh_claimed(
        self,
        connection: Connection,
        owner: str,
        *,
        credentials: CredentialsLookup,
        writer: TokenWriter,
    ) -> FreshToken:
        """Refresh ``connection``, read by the statement that gave its lease to ``owner``.

        The background refresher claims due connections many at a time by taking their leases
        in one ``UPDATE … RETURNING`` (``refresher.repository``): the row it returns is the read
        after taking the lease, so it is not read again. Each is then refreshed here by the same
        leader code, compare-and-swap and failure classes as a caller's refresh; ``writer``
        commits the grant (many to a transaction) before this returns. Not through the single
        flight: an in-process caller waiting there polls the row, and our write ends it.
        """
        async with self.runtime.sessions() as session:
            return await self._lead(
                session, connection, connection.version, True, owner, credentials, writer
            )

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
        """Holding the lease: read the row again (someone may have refreshed it), then lead."""
        session.expire_all()
        connection = await session.get(Connection, connection_id)
        if connection is None:
            await lease.release(session, connection_id, owner)
            raise ReauthorizationRequired("The connection no longer exists.")

        async def credentials(app_id: str | None) -> ClientCredentials | None:
            service = OAuthAppService(session, self.runtime.sealer, self.runtime.catalog)
            resolved = await service.by_id(app_id)
            return resolved.credentials if resolved is not None else None

        async def write_now(write: TokenWrite) -> bool:
            return (await write_tokens(session, [write]))[0]

        return await self._lead(session, connection, seen, force, owner, credentials, write_now)

    async def _lead(
        self,
        session: AsyncSession,
        connection: Connection,
        seen: int,
        force: bool,
        owner: str,
        credentials: CredentialsLookup,
        writer: TokenWriter,
    ) -> FreshToken:
        """Refresh ``connection`` (read under the lease ``owner`` holds) unless that is moot."""
        stored = handed_over = False
        connection_id = connection.id  # (a rollback below expires the instance)

        async def hand_over(write: TokenWrite) -> bool:
            # Once a write is handed to the writer (a batch may still be pending, shielded from
            # our cancellation), releasing the lease here would make its compare-and-swap fail
            # and lose a refresh token the provider has already rotated. The write clears the
            # lease when it lands. A write that failed outright leaves nothing pending: the
            # lease is released at once rather than left to expire under waiting callers.
            nonlocal handed_over
            handed_over = True
            try:
                return await writer(write)
            except Exception:
                handed_over = False
                await session.rollback()  # the failed write may have been on this session
                raise

        try:
            self._raise_if_unusable(connection)
            entry = self.runtime.catalog.get(connection.app_key)
            stale = needs_refresh(connection, entry, utcnow())
            if connection.version != seen or not (stale or force):
                return self.current(connection)  # someone else refreshed, or nothing to do
            token = await self._refresh_at_provider(
                session, connection, entry, owner, credentials, hand_over
            )
            stored = token.refreshed
            return token
        finally:
            # A stored token's compare-and-swap write already cleared the lease.
            if not stored and not handed_over:
                await lease.release(session, connection_id, owner)

    def _raise_if_unusable(self, connection: Connection) -> None:
        if connection.status == ConnectionStatus.NEEDS_REAUTH:
            raise ReauthorizationRequired(
                connection.status_reason or "The provider rejected the refresh token."
            )

    async def _refresh_at_provider(
        self,
        session: AsyncSession,
        connection: Connection,
        entry: ProviderEntry | None,
        owner: str,
        credentials: CredentialsLookup,
        writer: TokenWriter,
    ) -> FreshToken:
        refresh_token = self.vault.refresh_token(connection)
        app = await credentials(connection.oauth_app_id)
        if entry is None or app is None or refresh_token is None or not entry.supports_refresh:
            return await self._cannot_refresh(session, connection)
        client = await client_for(self.runtime, entry, connection.integration_params, app)
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
        return await self._store(connection, grant, owner, writer)

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
        self, connection: Connection, grant: TokenGrant, owner: str, writer: TokenWriter
    ) -> FreshToken:
        """Compare-and-swap: write only over the version we read, releasing the lease; the
        grant is committed (``writer``) before its token is returned to anyone."""
        now = utcnow()
        values = {
            **self.vault.sealed(connection, grant),
            "scopes": grant.scopes or connection.scopes,
            "version": connection.version + 1,
            "status": ConnectionStatus.ACTIVE,
            "status_reason": None,
            "refresh_failures": 0,
            "last_refreshed_at": now,
            "last_sync_at": now,
            "updated_at": now,
            "refresh_lease_owner": None,
            "refresh_lease_until": None,
        }
        events = [event_row(connection, EventType.REFRESHED, expires_at=str(grant.expires_at))]
        if connection.refresh_failures > 0:
            failures = connection.refresh_failures
            events.append(event_row(connection, EventType.RECOVERED, after_failures=failures))
        write = TokenWrite(connection.id, connection.version, owner, values, events)
        if not await writer(write):
            # Only possible if our lease expired mid-refresh; the other writer's token wins.
            logger.error("refresh of %s lost its compare-and-swap", connection.id)
            raise ProviderError("The token changed while it was being refreshed; retry.")
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
        session.add(connection)  # a claimed row comes detached from its claim (refresh_claimed)
        connection.status = ConnectionStatus.NEEDS_REAUTH
        connection.status_reason = f"{failure.error}: {failure.description or 'refresh rejected'}"[
            :500
        ]
        connection.refresh_failures += 1
        connection.updated_at = utcnow()
        await EventRepository(session).record(
            connection, EventType.REFRESH_FAILED, error=failure.error, terminal=True
        )
        await session.commit()
        logger.warning("connection %s needs re-authorization (%s)", connection.id, failure.error)

    async def _transient_failure(
        self, session: AsyncSession, connection: Connection, failure: ProviderFailure
    ) -> FreshToken:
        """The provider is down or confused: keep the status, serve what is still valid."""
        session.add(connection)  # a claimed row comes detached from its claim (refresh_claimed)
        connection.refresh_failures += 1
        await EventRepository(session).record(
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
        session.add(connection)  # a claimed row comes detached from its claim (refresh_claimed)
        connection.status = ConnectionStatus.NEEDS_REAUTH
        connection.status_reason = "The access token expired and there is no refresh token."
        await EventRepository(session).record(
            connection, EventType.REFRESH_FAILED, error="no_refresh_token", terminal=True
        )
        await session.commit()
        raise ReauthorizationRequired(connection.status_reason)
