"""What ``connectors serve`` runs in each worker process: the app, with the garbage collector
settled for a long-running server once the app has started."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from personal_connectors.app import create_app


def settle_garbage_collector() -> None:
    """Keep what start-up built (modules, the ORM's and FastAPI's metadata, the runtime) out of
    the collector's full passes, which otherwise walk all of it every few seconds under load,
    and collect the young generation less often: a request allocates hundreds of objects.
    Start-up leaves almost no cyclic garbage (`serve` collects after a migration), so a full
    pass here would only delay readiness. bench/RESULTS.md has the figures."""
    gc.freeze()
    gc.set_threshold(10_000, 20, 20)
    gc.enable()  # (`connectors serve` turns it off while the process starts)


def create_served_app() -> FastAPI:
    app = create_app()
    starting = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with starting(app):  # (the app's lifespan keeps its state on app.state)
            settle_garbage_collector()
            yield

    app.router.lifespan_context = lifespan
    return app
