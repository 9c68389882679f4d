"""The background refresher: tokens are refreshed before anyone asks for them.

A loop claims due connections (``refresher.repository``: about to expire, idle refresh tokens,
expired ones that cannot be refreshed) and refreshes each with ``Refresher.refresh_claimed`` —
the token path's own leader code, so the compare-and-swap, the kept refresh token and the failure
classes are the same whoever refreshes. Per claim, not per refresh: the rows come back from the
claim statement itself and their OAuth apps from one query; the refreshed grants are committed
many to a transaction (``refresher.writes``). A claim takes no more rows than there are free slots,
and per provider no more than its slots again. Every lease the refresher holds, waiting or
running, is renewed by one statement every third of a lease's life (``tokens.lease.kept``).

Stopping (``stop`` set, e.g. on SIGTERM) ends claiming, hands back claimed rows still waiting
for a slot, and lets the refreshes in flight finish within their bound; anything still running
then is cancelled and releases its lease (marking the rotation uncertain if a request was out).
A ``kill -9`` releases nothing: the leases, no longer renewed, expire within a lease's life and
the next refresher takes the rows again, knowing their attempt's outcome is unknown.

Beside refreshing, it prunes the audit trail by the retention settings (``events.retention``)
when it starts and then hourly (``--once``: once), in a task of its own, so a backlog of old
events never delays a refresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from asyncio import FIRST_COMPLETED, Semaphore
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum

from sqlalchemy.ext.asyncio import AsyncEngine

from personal_connectors.apps.service import OAuthAppService
from personal_connectors.crypto.aead import DecryptionError
from personal_connectors.crypto.keyring import KeyConfigurationError
from personal_connectors.events.retention import Pruned, prune_events
from personal_connectors.exceptions import APIError
from personal_connectors.models import utcnow
from personal_connectors.oauth.client import ClientCredentials
from personal_connectors.refresher.repository import (
    IDLE_SINCE,
    Claimed,
    DuePolicy,
    RefresherRepository,
)
from personal_connectors.refresher.writes import BatchedTokenWriter
from personal_connectors.runtime import Runtime
from personal_connectors.storage.database import create_sessionmaker, create_unpinged_engine
from personal_connectors.telemetry import metrics
from personal_connectors.tokens import lease
from personal_connectors.tokens.exceptions import ReauthorizationRequired
from personal_connectors.tokens.refresh import Refresher

logger = logging.getLogger(__name__)

# Write transactions in flight on PostgreSQL: a second overlaps one batch's round trips and WAL
# flush with the next (more measured no faster in bench/refresher.py).
WRITE_TRANSACTIONS = 2
# How often a running refresher prunes the audit trail (events.retention).
PRUNE_INTERVAL_SECONDS = 3600.0


class Outcome(StrEnum):
    REFRESHED = "refreshed"
    UNCHANGED = "unchanged"  # already fresh, or a passing fault while the token is still valid
    NEEDS_REAUTH = "needs_reauth"
    FAILED = "failed"  # passing fault and no valid token left, or an unexpected error


@dataclass
class RefresherStats:
    outcomes: Counter[Outcome] = field(default_factory=Counter)
    started: float = field(default_factory=time.monotonic)
    pruned: Pruned = field(default_factory=Pruned)

    def as_dict(self) -> dict[str, float | int]:
        return {
            **{outcome.value: self.outcomes[outcome] for outcome in Outcome},
            **{f"pruned_{name}": count for name, count in self.pruned.as_dict().items()},
            "seconds": round(time.monotonic() - self.started, 3),
        }


class BackgroundRefresher:
    def __init__(
        self,
        runtime: Runtime,
        *,
        concurrency: int | None = None,
        provider_concurrency: int | None = None,
        organization_id: str | None = None,
    ) -> None:
        settings = runtime.settings
        self.runtime = runtime
        self.organization_id = organization_id
        self.refresher = Refresher(runtime)
        self.concurrency = concurrency or settings.refresher_concurrency
        self.provider_concurrency = provider_concurrency or settings.refresher_provider_concurrency
        self.refresh_bound = settings.refresh_bound_seconds
        self.owner = lease.new_owner()
        self.stats = RefresherStats()
        # PostgreSQL locks rows, not the database, so batches overlap there (SQLite's writers
        # would only queue for its one write lock), on connections of their own that skip the
        # ping before each batch (the writer retries a failed batch anyway).
        self._write_engine: AsyncEngine | None = None
        if runtime.engine.dialect.name == "sqlite":
            self.writer = BatchedTokenWriter(runtime.sessions, parallel=1)
        else:
            self._write_engine = create_unpinged_engine(runtime.engine, WRITE_TRANSACTIONS)
            sessions = create_sessionmaker(self._write_engine)
            self.writer = BatchedTokenWriter(sessions, parallel=WRITE_TRANSACTIONS)
        self._running: dict[asyncio.Task[None], Claimed] = {}
        # After an idle claim that found nothing, the next waits this long (monotonic): idle
        # refresh tokens are rare and not urgent.
        self._idle_rest_until = 0.0
        # The backlog (metrics' queue depth and lag) is counted at most once an interval
        # (monotonic), by a query of its own after a claim.
        self._backlog_due = 0.0
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._stop = asyncio.Event()
        # Rows that failed in an unexpected way rest until then (monotonic): no hot loop on them.
        self._resting: dict[str, float] = {}
        # Connections whose refresh failed unexpectedly and whose lease is not given back yet.
        self._unreleased: set[str] = set()
        entries = list(runtime.catalog)
        self._refreshable = [entry.key for entry in entries if entry.supports_refresh]
        # Never later than the token path would refresh by itself.
        margins = (entry.refresh_margin for entry in entries)
        self._window = max([settings.refresher_window_seconds, *margins])

    def policy(self) -> DuePolicy:
        idle = self.runtime.settings.refresher_idle_seconds
        return DuePolicy(utcnow(), self._window, idle, self._refreshable, self.organization_id)

    async def run(self, stop: asyncio.Event, *, once: bool = False) -> RefresherStats:
        """Refresh until ``stop`` is set; with ``once``, until nothing is due any more."""
        interval = self.runtime.settings.refresher_interval_seconds
        self._stop = stop
        stopping = asyncio.create_task(stop.wait())
        pruning = asyncio.create_task(self._prune(once=once))
        seconds = self.runtime.settings.refresh_lease_seconds
        try:
            # Its leases, waiting or running, live while this refresher does.
            async with lease.kept(self.runtime.sessions, self.owner, seconds):
                try:
                    while not stop.is_set():
                        if self._unreleased:
                            await self._release_unreleased()
                        claimed = await self._claim_into_free_slots()
                        if once and not claimed and not self._running:
                            break
                        # Wake when a refresh ends (claim more), on stop, or after the interval.
                        await asyncio.wait(
                            [*self._running, stopping],
                            timeout=interval,
                            return_when=FIRST_COMPLETED,
                        )
                finally:
                    stopping.cancel()
                    await self._drain()
                    await self.writer.close()
                    await pruning  # stops between batches once ``stop`` is set
        finally:
            pruning.cancel()
            if self._write_engine is not None:
                await self._write_engine.dispose()
        return self.stats

    async def _prune(self, *, once: bool) -> None:
        """Retention (``events.retention``) now, then every ``PRUNE_INTERVAL_SECONDS`` until
        stopped; with ``once``, one pass. A failure is logged and tried again next time."""
        while not self._stop.is_set():
            try:
                pruned = await prune_events(
                    self.runtime.sessions,
                    self.runtime.settings,
                    organization_id=self.organization_id,
                    stop=self._stop,
                )
            except Exception as exc:  # any database fault: retention waits for the next pass
                logger.warning(
                    "pruning old events failed (%s); trying again later", type(exc).__name__
                )
            else:
                self.stats.pruned = self.stats.pruned.plus(pruned)
                if any(pruned.as_dict().values()):
                    logger.info("pruned old events: %s", pruned.as_dict())
            if once:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), PRUNE_INTERVAL_SECONDS)

    async def _claim_into_free_slots(self) -> list[Claimed]:
        free = self.concurrency - len(self._running)
        # One claim statement per few refreshes, not one per refresh (each is a write).
        if free <= 0 or (self._running and free < max(1, self.concurrency // 4)):
            return []
        # Per provider: its slots running, and as many claimed rows waiting for them.
        queued = Counter(claimed.app_key for claimed in self._running.values())
        most = 2 * self.provider_concurrency
        now = time.monotonic()
        self._resting = {key: until for key, until in self._resting.items() if until > now}
        try:
            claimed = await self._claim(free, {key for key, n in queued.items() if n >= most})
        except Exception:
            logger.exception("the background refresher could not claim work; trying again")
            return []
        for item in claimed:
            if queued[item.app_key] >= most:
                await self._release(item)  # the claim's limit is global; this one is not
                continue
            queued[item.app_key] += 1
            self._running[asyncio.create_task(self._refresh(item))] = item
        metrics.set_refresher_in_flight(len(self._running))
        await self._count_pass()
        return claimed

    async def _count_pass(self) -> None:
        """A claim pass for the metrics; with the backlog at most once an interval."""
        now = time.monotonic()
        if now < self._backlog_due:
            metrics.count_refresher_pass()
            return
        self._backlog_due = now + self.runtime.settings.refresher_interval_seconds
        policy = self.policy()
        try:
            async with self.runtime.sessions() as session:
                depth, soonest = await RefresherRepository(session).backlog(policy.expiring())
        except Exception:
            logger.exception("the background refresher could not count its backlog")
            metrics.count_refresher_pass()
            return
        lag = 0.0
        if soonest is not None:
            # Due from the window's start before its expiry, or its half-life if that is later.
            expires_at, half_life = soonest
            due_since = expires_at - timedelta(seconds=self._window)
            if half_life is not None and half_life > due_since:
                due_since = half_life
            lag = max(0.0, (policy.now - due_since).total_seconds())
        metrics.count_refresher_pass(depth, lag)

    async def _claim(self, limit: int, skip_providers: set[str]) -> list[Claimed]:
        """Expiring rows first (an index range); idle ones only with slots left over.

        The claimed rows' OAuth apps are read in the same transaction, and each row carries its
        app's credentials, so a refresh reads nothing more before calling the provider.
        """
        policy = self.policy()
        now = time.monotonic()
        async with self.runtime.sessions() as session:
            repository = RefresherRepository(session)
            claim = functools.partial(
                repository.claim,
                now=policy.now,
                owner=self.owner,
                lease_seconds=self.runtime.settings.refresh_lease_seconds,
                skip_providers=skip_providers,
                skip_ids=self._resting.keys(),
            )
            claimed = await claim(policy.expiring(), limit=limit)
            if len(claimed) < limit and now >= self._idle_rest_until:
                idle = await claim(policy.idle(), limit=limit - len(claimed), order=IDLE_SINCE)
                if not idle and not skip_providers:
                    self._idle_rest_until = now + self.runtime.settings.refresher_interval_seconds
                claimed += idle
            apps = await repository.apps({c.app_id for c in claimed if c.app_id})
            await session.commit()
        service = OAuthAppService(session, self.runtime.sealer, self.runtime.catalog)
        credentials: dict[str, ClientCredentials] = {}
        for app in apps:
            try:
                credentials[app.id] = service.credentials(app)
            except (DecryptionError, KeyConfigurationError):
                # A missing or wrong encryption key is the operator's to fix; it must neither
                # stall the rest of the claim nor mark that app's connections needs_reauth.
                logger.error("OAuth app %s: its client secret cannot be opened", app.id)
        unreadable = {app.id for app in apps} - credentials.keys()
        ready: list[Claimed] = []
        for item in claimed:
            if item.app_id in unreadable:
                self._resting[item.id] = (
                    time.monotonic() + self.runtime.settings.refresher_interval_seconds
                )
                await self._release(item)
            else:
                ready.append(item.with_credentials(credentials.get(item.app_id or "")))
        return ready

    async def _refresh(self, item: Claimed) -> None:
        slots = self._slots.setdefault(item.app_key, Semaphore(self.provider_concurrency))
        started = False
        try:
            async with slots:
                started = True
                if self._stop.is_set():
                    # Stopping: hand it back for the next refresher.
                    await self._release(item)
                    return
                outcome = await self._outcome(item)
            self.stats.outcomes[outcome] += 1
        except asyncio.CancelledError:
            if not started:
                # Cancelled (by the shutdown drain) while waiting for its provider's slot:
                # nothing was sent, so the row goes back now instead of when its lease expires.
                await asyncio.shield(self._release(item))
            raise
        finally:
            self._running.pop(asyncio.current_task(), None)  # type: ignore[arg-type]
            metrics.set_refresher_in_flight(len(self._running))

    async def _outcome(self, item: Claimed) -> Outcome:
        try:
            token = await self.refresher.refresh_claimed(
                item.connection, self.owner, credentials=item.credentials_of, writer=self.writer
            )
        except ReauthorizationRequired:
            return Outcome.NEEDS_REAUTH
        except APIError as exc:
            # A passing fault is counted on the row and backs off there; rest it here too.
            logger.warning("background refresh of %s failed: %s", item.id, exc.system_message)
        except Exception:
            logger.exception("background refresh of %s failed unexpectedly", item.id)
            # Its lease may still be held (the refresh could not give it back, e.g. with the
            # database away): this refresher renews every lease it holds, so it must give
            # this one back itself, or the connection would wait for it as long as it runs.
            self._unreleased.add(item.id)
            await self._release_unreleased()
        else:
            return Outcome.REFRESHED if token.refreshed else Outcome.UNCHANGED
        self._resting[item.id] = time.monotonic() + self.runtime.settings.refresher_interval_seconds
        return Outcome.FAILED

    async def _release_unreleased(self) -> None:
        """Give back the leases of refreshes that failed unexpectedly (tried again each turn
        until the database takes it). Their outcome is unknown: the row says so."""
        for connection_id in sorted(self._unreleased):
            try:
                async with self.runtime.sessions() as session:
                    await lease.release(session, connection_id, self.owner, uncertain=True)
            except Exception:
                logger.warning("giving back the lease of %s failed; trying again", connection_id)
                return
            self._unreleased.discard(connection_id)

    async def _release(self, item: Claimed) -> None:
        async with self.runtime.sessions() as session:
            await lease.release(session, item.id, self.owner)

    async def _drain(self) -> None:
        """Let refreshes in flight finish, then cancel what is left (its lease is released)."""
        if not self._running:
            return
        _, late = await asyncio.wait(list(self._running), timeout=self.refresh_bound)
        for task in late:
            task.cancel()
        if late:
            await asyncio.wait(late)
