"""Gauges that are read rather than counted: the database pools' connections in use and idle,
sampled every ``CONNECTORS_METRICS_SAMPLE_SECONDS`` by each worker (``telemetry.metrics`` adds the
workers up). Nothing on a request's path pays for them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from personal_connectors.runtime import Runtime
from personal_connectors.storage.database import pool_usage
from personal_connectors.telemetry import metrics

logger = logging.getLogger(__name__)


def sample(runtime: Runtime) -> None:
    for pool, usage in (
        ("main", pool_usage(runtime.engine)),
        ("token_reader", runtime.hot_reader.usage() if runtime.hot_reader else None),
    ):
        if usage is not None:
            metrics.set_pool_connections(pool, *usage)


async def _sample_forever(runtime: Runtime) -> None:
    while True:
        try:
            sample(runtime)
        except Exception:  # a gauge must never take the service down
            logger.exception("sampling the database pools failed")
        await asyncio.sleep(runtime.settings.metrics_sample_seconds)


@asynccontextmanager
async def sampling(runtime: Runtime) -> AsyncIterator[None]:
    task = asyncio.create_task(_sample_forever(runtime), name="metrics-sampler")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
