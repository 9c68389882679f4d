"""The long-lived parts every request shares: settings, database, keys, catalog, HTTP client.

Built once per process (``Runtime.start``) and closed on shutdown; the HTTP layer, the CLI and
the tests all get their dependencies from here, so there is one place that wires the service.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from personal_connectors.config import Settings
from personal_connectors.crypto.aead import Sealer
from personal_connectors.crypto.keyring import load_keyring
from personal_connectors.events.audit import TokenAudit
from personal_connectors.events.key_use import KeyUse
from personal_connectors.oauth.rfc7517 import KeySetCache
from personal_connectors.oauth.rfc8414 import MetadataCache
from personal_connectors.outbound.client import OutboundClient, create_client
from personal_connectors.providers.catalog import Catalog, load_catalog
from personal_connectors.rate_limits import rate_limits_of
from personal_connectors.single_flight import SingleFlight
from personal_connectors.stamped_cache import StampedCache
from personal_connectors.storage.database import create_engine, create_sessionmaker
from personal_connectors.storage.driver import HotReader, create_hot_reader
from personal_connectors.wakeups import Wakeups

if TYPE_CHECKING:
    from personal_connectors.rate_limits.limiter import RateLimits


@dataclass
class Runtime:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    sealer: Sealer
    catalog: Catalog
    # Every outbound call of the process (outbound.client.create_client).
    http: OutboundClient
    # complete-oauth calls waiting for their flow, keyed by flow id (flows.service).
    flow_wakeups: Wakeups
    metadata: MetadataCache = field(default_factory=MetadataCache)
    # Trusted issuers' key sets (token exchange).
    key_sets: KeySetCache = field(default_factory=KeySetCache)
    # In-flight refreshes of this process, keyed by connection id (see tokens.refresh).
    refresh_flights: SingleFlight[Any] = field(default_factory=SingleFlight)
    # Tokens handed out, queued for the batched audit writer the app's lifespan runs.
    token_audit: TokenAudit = field(default_factory=TokenAudit)
    # API keys used, for their ``last_used_at`` (stamped by the app's lifespan, at most once a
    # minute per key and process).
    key_use: KeyUse = field(default_factory=KeyUse)
    # MCP servers' tool lists, per connection (mcp_servers.service).
    mcp_tools: StampedCache[Any] = field(default_factory=StampedCache)
    # The token hot path's read on the driver (storage.driver, tokens.repository).
    hot_reader: HotReader | None = None
    # CONNECTORS_RATE_LIMIT*: None when no limit is set, and then no route does any limit work.
    rate_limits: RateLimits | None = None

    @classmethod
    def start(
        cls, settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> Runtime:
        """``transport`` lets unit tests fake a provider's HTTP for the shared client."""
        engine = create_engine(settings)
        return cls(
            settings=settings,
            engine=engine,
            sessions=create_sessionmaker(engine),
            sealer=Sealer(load_keyring(settings)),
            catalog=load_catalog(settings.providers_file),
            http=create_client(settings, transport=transport),
            token_audit=TokenAudit(flush_seconds=settings.token_audit_flush_seconds),
            key_sets=KeySetCache(refetch_after=settings.jwks_refetch_seconds),
            hot_reader=create_hot_reader(settings),
            flow_wakeups=Wakeups(settings.complete_wait_poll_seconds),
            rate_limits=rate_limits_of(settings),
        )

    async def close(self) -> None:
        # Refreshes still talking to a provider finish first: their answers are rotated tokens.
        await self.refresh_flights.drain(self.settings.refresh_bound_seconds)
        await self.flow_wakeups.close()
        await self.http.aclose()
        await self.engine.dispose()
        if self.hot_reader is not None:
            await self.hot_reader.close()
