"""Refreshing one connection's token exactly once, however many workers ask, and never losing
the refresh token the provider rotated.

Three layers make a refresh exclusive, each for a reason:
1. an in-process single flight, so concurrent callers in one worker share one attempt;
2. a lease in the database (``tokens.lease``), so one worker across all processes and instances
   talks to the provider, and the others wait for its result;
3. a re-read after taking the lease and a compare-and-swap write on ``version``
   (``tokens.repository.write_tokens``), so a refresh that someone else already finished is not
   repeated and no write is lost.

Two clocks keep a slow provider from costing the grant. A caller waits at most
``refresh_wait_seconds`` and then gets the still-valid token or a 503; the refresh itself is a
task of its own (the single flight's) that goes on for up to ``refresh_request_seconds`` per
request, its lease renewed meanwhile, and stores the rotated refresh token when the answer comes.
Retries resend only what is known not to have been processed (no connection, 5xx, 429). A
request whose outcome is unknown (a timeout or reset after it was sent, a holder that died)
leaves ``rotation_uncertain_since`` on the row; inside the provider's
``refresh_token_grace_seconds`` the same refresh token is sent again, without one it is sent
again once, and an ``invalid_grant`` after such an attempt is ``rotation_lost``: needs_reauth
with a ``connection.rotation_lost`` event, never a silent loop.

The background refresher runs the same leader code (``refresh_claimed``) on rows it claimed many
at a time; only where the row comes from and how the write is committed differ.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
from sqlalchemy.ext.asyncio import AsyncSession
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, wait_random_exponential

from personal_connectors.apps.gateway import client_for
from personal_connectors.apps.registrations import McpRegistrations
from personal_connectors.apps.service import OAuthAppService
from personal_connectors.events.repository import EventRepository, event_row
from personal_connectors.events.types import EventType
from personal_connectors.exceptions import ProviderError
from personal_connectors.models import Connection, ConnectionStatus, utcnow
from personal_connectors.oauth.client import ClientCredentials, TokenGrant
from personal_connectors.oauth.errors import (
    ProviderBadAnswer,
    ProviderFailure,
    ProviderRejected,
    ProviderUnreachable,
)
from personal_connectors.oauth.rfc7523 import InvalidPrivateKey
from personal_connectors.providers.schema import MINTING_MODES, ProviderEntry
from personal_connectors.runtime import Runtime
from personal_connectors.storage.database import database_unavailable
from personal_connectors.telemetry.metrics import count_refresh
from personal_connectors.tokens import lease
from personal_connectors.tokens.exceptions import (
    ReauthorizationRequired,
    RefreshContended,
    TokenUnavailable,
)
from personal_connectors.tokens.lifetime import needs_refresh
from personal_connectors.tokens.minting import mint
from personal_connectors.tokens.records import ConnectionLike
from personal_connectors.tokens.repository import TokenWrite, write_tokens
from personal_connectors.tokens.vault import TokenVault

logger = logging.getLogger(__name__)

POLL_SECONDS = 0.05
# Between tries to store a refreshed grant while the database is out of reach (``_lead``).
FIRST_STORE_PAUSE, MAX_STORE_PAUSE = 0.2, 1.0
ROTATION_LOST = "rotation_lost"
# Transport failures that happen before a request is sent: the provider never saw it.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)


@dataclass(frozen=True)
class FreshToken:
    access_token: str
    token_type: str
    expires_at: datetime | None
    scopes: list[str]
    # True only for a token this call obtained from the provider (the background refresher
    # counts its work by it); a token served as it was, or another worker's result, is False.
    refreshed: bool = False


# Commits a write and says whether its compare-and-swap won: the token path commits each at once
# (``write_tokens`` on its session), the background refresher many to a transaction.
TokenWriter = Callable[[TokenWrite], Awaitable[bool]]
# An OAuth app's credentials by id; None for an app that is gone.
CredentialsLookup = Callable[[str | None], Awaitable[ClientCredentials | None]]


def outcome_unknown(failure: BaseException) -> bool:
    """Whether a failed request may have been processed by the provider: a transport failure
    after it was sent (read timeout, reset, broken answer), raised as it is or as the cause
    of an ``oauth.errors`` class."""
    seen: BaseException | None = failure
    while seen is not None:
        if isinstance(seen, httpx.TransportError):
            return not isinstance(seen, _NOT_SENT)
        seen = seen.__cause__ or seen.__context__
    return False


class _Attempt:
    """One leader's conversation with the provider: which failures are sent again.

    Known failures (nothing sent, or an answer that rotated nothing) are retried inside the
    retry budget, and so is a failure whose outcome is unknown while the provider's grace
    period accepts the same refresh token again. Without a grace period an unknown outcome is
    owed one resend, even past the budget (none if the row already carried such a doubt: the
    first request of this attempt was that one more).
    """

    def __init__(self, uncertain_since: datetime | None, grace_seconds: int, budget: float):
        self.uncertain_since = uncertain_since
        self.grace = timedelta(seconds=grace_seconds)
        self.budget = budget
        self.resends = 0 if uncertain_since is not None else 1
        self.in_flight = False  # a request is out: cancelling now leaves its outcome unknown
        self._owed_resend = False

    @property
    def uncertain(self) -> bool:
        """The refresh token may have been rotated in an answer we never read."""
        return self.uncertain_since is not None

    def doubt(self) -> None:
        """The provider may have rotated the refresh token in an answer that is lost."""
        self.uncertain_since = self.uncertain_since or utcnow()

    def worth_retrying(self, failure: BaseException) -> bool:
        self._owed_resend = False
        if outcome_unknown(failure):
            self.doubt()
            assert self.uncertain_since is not None
            if self.grace and utcnow() - self.uncertain_since < self.grace:
                return True
            if self.resends > 0:
                self.resends -= 1
                self._owed_resend = True
                return True
            return False
        return isinstance(failure, (ProviderUnreachable, ProviderBadAnswer))

    def stop(self, state: RetryCallState) -> bool:
        """Every retry stops at the budget but the one resend an unknown outcome is owed."""
        return not self._owed_resend and (state.seconds_since_start or 0.0) > self.budget


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
        """A token newer than ``connection``'s version, or the current one if still fresh.

        Waits ``refresh_wait_seconds`` at most: then the still-valid token, or a 503 once it
        has expired. The refresh goes on without its callers and stores what it gets.
        """
        seen_version = connection.version
        try:
            token: FreshToken = await self.runtime.refresh_flights.run(
                connection.id,
                lambda: self._refresh_across_workers(connection.id, seen_version, force),
                wait_seconds=self.runtime.settings.refresh_wait_seconds,
            )
        except (TimeoutError, RefreshContended):
            return self._still_valid(connection)
        return token

    def _still_valid(self, connection: ConnectionLike) -> FreshToken:
        if connection.expires_at is None or connection.expires_at > utcnow():
            return self.current(connection)
        raise TokenUnavailable(
            "The provider has not answered the refresh yet and the current token has expired.",
            headers={"Retry-After": "2"},
        )

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
        seconds = self.runtime.settings.refresh_lease_seconds
        # Nobody waits longer than this for another worker's refresh (``refresh``).
        deadline = time.monotonic() + self.runtime.settings.refresh_wait_seconds
        while True:
            async with self.runtime.sessions() as session:
                if await lease.try_acquire(session, connection_id, owner, seconds):
                    async with lease.kept(self.runtime.sessions, owner, seconds, connection_id):
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
        entry = self.runtime.catalog.get(connection.app_key)
        attempt = _Attempt(
            connection.rotation_uncertain_since,
            entry.refresh_token_grace_seconds if entry is not None else 0,
            self.runtime.settings.refresh_retry_seconds,
        )

        async def hand_over(write: TokenWrite) -> bool:
            # Once a write is handed to the writer (a batch may still be pending, shielded from
            # our cancellation), releasing the lease here would make its compare-and-swap fail
            # and lose a refresh token the provider has already rotated. The write clears the
            # lease when it lands. A write that failed outright leaves nothing pending: the
            # lease is released at once rather than left to expire under waiting callers.
            # The database out of reach (a restart, a failover) is waited for, up to a
            # request's lifetime: the rotated refresh token lives only in this process until
            # the write lands, and the lease is ours again once renewals reach the database.
            nonlocal handed_over
            handed_over = True
            deadline = time.monotonic() + self.runtime.settings.refresh_request_seconds
            pause = FIRST_STORE_PAUSE
            while True:
                try:
                    return await writer(write)
                except Exception as exc:
                    with contextlib.suppress(Exception):
                        await session.rollback()  # the failed write may have been on it
                    if database_unavailable(exc) and time.monotonic() + pause < deadline:
                        logger.warning(
                            "storing the refresh of %s waits for the database", connection_id
                        )
                        await asyncio.sleep(pause)
                        pause = min(2 * pause, MAX_STORE_PAUSE)
                        continue
                    handed_over = False
                    # The provider has rotated the refresh token and the new one is not stored:
                    # a later invalid_grant is that loss (rotation_lost), not a revoked grant.
                    attempt.doubt()
                    raise

        try:
            self._raise_if_unusable(connection)
            stale = needs_refresh(connection, entry, utcnow())
            if connection.version != seen or not (stale or force):
                return self.current(connection)  # someone else refreshed, or nothing to do
            token = await self._refresh_at_provider(
                session, connection, entry, owner, credentials, hand_over, attempt
            )
            stored = token.refreshed
            return token
        finally:
            # A stored token's compare-and-swap write already cleared the lease; a request
            # that may have been processed (or was cut off) leaves its doubt on the row.
            if not stored and not handed_over:
                uncertain = attempt.uncertain or attempt.in_flight
                await lease.release(session, connection_id, owner, uncertain=uncertain)

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
        attempt: _Attempt,
    ) -> FreshToken:
        if connection.auth_mode in MINTING_MODES:
            return await self._mint_again(session, connection, entry, owner, writer, attempt)
        refresh_token = self.vault.refresh_token(connection)
        call_seconds = self.runtime.settings.refresh_request_seconds
        registered = None
        if connection.mcp_server_url is not None:  # a custom MCP server's registration
            registered = await McpRegistrations(session, self.runtime).client(
                connection.mcp_registration_id, call_seconds=call_seconds
            )
            entry = registered[0] if registered is not None else None
            app = registered[1].credentials if registered is not None else None
        else:
            app = await credentials(connection.oauth_app_id)
        if entry is None or app is None or refresh_token is None or not entry.supports_refresh:
            count_refresh(connection.app_key, "cannot_refresh")
            return await self._cannot_refresh(session, connection)
        await (
            session.commit()
        )  # no transaction (nor its connection) held while the provider answers
        client = (
            registered[1]
            if registered is not None
            else await client_for(
                self.runtime,
                entry,
                connection.integration_params,
                app,
                call_seconds=call_seconds,
            )
        )
        provider = connection.app_key
        try:
            scopes = list(connection.scopes or [])
            grant = await self._send(
                lambda: client.refresh(refresh_token, current_scopes=scopes), attempt
            )
        except ProviderRejected as exc:
            if exc.is_terminal:
                lost = exc.error == "invalid_grant" and attempt.uncertain
                count_refresh(provider, ROTATION_LOST if lost else "rejected")
                await self._mark_needs_reauth(session, connection, exc, attempt, lost)
                raise ReauthorizationRequired(
                    f"The refresh token was rotated in an answer that never arrived "
                    f"({ROTATION_LOST}); connect the account again."
                    if lost
                    else f"The provider rejected the refresh token ({exc.error})."
                ) from None
            count_refresh(provider, "failed")
            return await self._transient_failure(session, connection, exc, attempt)
        except ProviderFailure as exc:
            count_refresh(provider, "failed")
            return await self._transient_failure(session, connection, exc, attempt)
        try:
            stored = await self._store(connection, grant, owner, writer)
        except Exception:
            count_refresh(provider, "not_stored")  # lost its compare-and-swap, or the write failed
            raise
        count_refresh(provider, "refreshed")
        return stored

    async def _mint_again(
        self,
        session: AsyncSession,
        connection: Connection,
        entry: ProviderEntry | None,
        owner: str,
        writer: TokenWriter,
        attempt: _Attempt,
    ) -> FreshToken:
        """A minting connection (SPEC §10) is refreshed by minting a new token with its stored
        credentials, under the same lease, retries and compare-and-swap as a refresh. A
        refusal means the credentials no longer work: ``needs_reauth`` until they are replaced
        (``PUT /{id}/credentials``)."""
        values = self.vault.credentials(connection)
        if entry is None or values is None or entry.auth_mode != connection.auth_mode:
            return await self._cannot_refresh(session, connection)
        params = dict(connection.integration_params or {})
        await session.commit()  # no transaction (nor its connection) held while minting
        call_seconds = self.runtime.settings.refresh_request_seconds
        try:
            grant = await self._send(
                lambda: mint(self.runtime, entry, params, values, call_seconds=call_seconds),
                attempt,
            )
        except (ProviderRejected, InvalidPrivateKey) as exc:
            refused = (
                exc
                if isinstance(exc, ProviderRejected)
                else ProviderRejected("invalid_client", "the stored private key does not load")
            )
            await self._mark_needs_reauth(session, connection, refused, attempt, False)
            raise ReauthorizationRequired(
                f"The provider refused the stored credentials ({refused.error}); replace them "
                "with PUT /{connection_id}/credentials."
            ) from None
        except ProviderFailure as exc:
            return await self._transient_failure(session, connection, exc, attempt)
        return await self._store(connection, grant, owner, writer)

    async def _send(
        self, request: Callable[[], Awaitable[TokenGrant]], attempt: _Attempt
    ) -> TokenGrant:
        """The provider's answer to ``request`` (a refresh, a mint), sent again as ``attempt``
        allows."""
        retrying = AsyncRetrying(
            retry=retry_if_exception(attempt.worth_retrying),
            wait=wait_random_exponential(multiplier=0.2, max=2.0),
            stop=attempt.stop,
            reraise=True,
        )
        async for call in retrying:
            with call:
                attempt.in_flight = True  # stays so only if cancelled mid-request
                try:
                    grant = await request()
                except Exception:
                    attempt.in_flight = False
                    raise
                attempt.in_flight = False
                return grant
        raise AssertionError("unreachable")  # reraise=True re-raises the last failure

    async def _store(
        self, connection: Connection, grant: TokenGrant, owner: str, writer: TokenWriter
    ) -> FreshToken:
        """Compare-and-swap: write only over the version we read, releasing the lease; the
        grant is committed (``writer``) before its token is returned to anyone."""
        now = utcnow()
        # The grant's scopes are what the provider granted, or (RFC 6749 §5.1, §6) what was
        # asked for when its answer had none: the new token's, even when that is none at all.
        scopes = list(grant.scopes) if grant.scopes is not None else connection.scopes
        values = {
            **self.vault.sealed(connection, grant, issued_at=now),
            "scopes": scopes,
            "version": connection.version + 1,
            "status": ConnectionStatus.ACTIVE,
            "status_reason": None,
            "refresh_failures": 0,
            "last_refreshed_at": now,
            "last_sync_at": now,
            "updated_at": now,
            "refresh_lease_owner": None,
            "refresh_lease_until": None,
            "refresh_attempt_at": None,
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
            list(scopes or []),
            refreshed=True,
        )

    async def _mark_needs_reauth(
        self,
        session: AsyncSession,
        connection: Connection,
        failure: ProviderRejected,
        attempt: _Attempt,
        rotation_lost: bool,
    ) -> None:
        """The grant is gone. ``rotation_lost``: refused right after a request whose answer
        never arrived, so the provider rotated the token in it (and, reused, revoked it)."""
        session.add(connection)  # a claimed row comes detached from its claim (refresh_claimed)
        connection.status = ConnectionStatus.NEEDS_REAUTH
        connection.refresh_failures += 1
        connection.updated_at = utcnow()
        repository = EventRepository(session)
        if rotation_lost:
            connection.status_reason = (
                f"{ROTATION_LOST}: the provider rotated the refresh token in an answer that "
                "never arrived; connect the account again"
            )
            assert attempt.uncertain_since is not None
            await repository.record(
                connection,
                EventType.ROTATION_LOST,
                error=failure.error,
                uncertain_since=attempt.uncertain_since.isoformat(),
            )
        else:
            description = failure.description or "refresh rejected"
            connection.status_reason = f"{failure.error}: {description}"[:500]
            await repository.record(
                connection, EventType.REFRESH_FAILED, error=failure.error, terminal=True
            )
        await session.commit()
        reason = ROTATION_LOST if rotation_lost else failure.error
        logger.warning("connection %s needs re-authorization (%s)", connection.id, reason)

    async def _transient_failure(
        self,
        session: AsyncSession,
        connection: Connection,
        failure: ProviderFailure,
        attempt: _Attempt,
    ) -> FreshToken:
        """The provider is down or confused: keep the status, serve what is still valid."""
        session.add(connection)  # a claimed row comes detached from its claim (refresh_claimed)
        connection.refresh_failures += 1
        await EventRepository(session).record(
            connection,
            EventType.REFRESH_FAILED,
            error=type(failure).__name__,
            terminal=False,
            outcome_unknown=attempt.uncertain,
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
