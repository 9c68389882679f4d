"""What ``connectors serve`` runs in each worker process: the app, then the garbage collector
settled for a long-running server."""

from __future__ import annotations

import gc

from fastapi import FastAPI

from personal_connectors.app import create_app


def settle_garbage_collector() -> None:
    """Keep what start-up built (modules, the ORM's and FastAPI's metadata) out of the
    collector's full passes, which otherwise walk all of it every few seconds under load, and
    collect the young generation less often: a request allocates hundreds of objects.
    bench/RESULTS.md has the figures."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 20, 20)


def create_served_app() -> FastAPI:
    app = create_app()
    settle_garbage_collector()
    return app
