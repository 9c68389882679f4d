"""The long-lived parts every request shares: settings, database, keys, catalog, HTTP client.

Built once per process (``Runtime.start``) and closed on shutdown; the HTTP layer, the CLI and
the tests all get their dependencies from here, so there is one place that wires the service.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from personal_connectors.config import Settings
from personal_connectors.crypto.aead import Sealer
from personal_connectors.crypto.keyring import load_keyring
from personal_connectors.oauth.client import shared_provider_transport
from personal_connectors.oauth.rfc8414 import MetadataCache
from personal_connectors.providers.catalog import Catalog, load_catalog
from personal_connectors.storage.database import create_engine, create_sessionmaker
from personal_connectors.storage.hot_reader import HotReader, create_hot_reader
from personal_connectors.tokens.audit import TokenAudit
from personal_connectors.tokens.single_flight import SingleFlight

USER_AGENT = "personal-connectors/0.1"


@dataclass
class Runtime:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    sealer: Sealer
    catalog: Catalog
    http: httpx.AsyncClient
    metadata: MetadataCache = field(default_factory=MetadataCache)
    # In-flight refreshes of this process, keyed by connection id (see tokens.refresh).
    refresh_flights: SingleFlight[Any] = field(default_factory=SingleFlight)
    # Tokens handed out, queued for the batched audit writer the app's lifespan runs.
    token_audit: TokenAudit = field(default_factory=TokenAudit)
    # The token hot path's read (storage.hot_reader.create_hot_reader says how and why).
    hot_reader: HotReader | None = None
    # The keep-alive pool of OAuth calls to providers (oauth.client.shared_provider_transport).
    provider_transport: httpx.AsyncBaseTransport | None = None

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
            http=httpx.AsyncClient(
                timeout=settings.provider_timeout_seconds,
                follow_redirects=False,
                transport=transport,
                headers={"User-Agent": USER_AGENT},
            ),
            token_audit=TokenAudit(flush_seconds=settings.token_audit_flush_seconds),
            hot_reader=create_hot_reader(settings),
            provider_transport=shared_provider_transport(),
        )

    async def close(self) -> None:
        # Refreshes still talking to a provider finish first: their answers are rotated tokens.
        await self.refresh_flights.drain(self.settings.refresh_bound_seconds)
        await self.http.aclose()
        if self.provider_transport is not None:
            await self.provider_transport.aclose()
        await self.engine.dispose()
        if self.hot_reader is not None:
            await self.hot_reader.close()
