"""Micro-benchmark: what the request metric adds to a request, in process.

The request middleware (``http.context.RequestContextMiddleware``) runs around a trivial ASGI
app that answers 200, as ``serve`` runs it: prometheus-client in multiprocess mode (a private
``PROMETHEUS_MULTIPROC_DIR``), the access log off (its cost is the log's, not the metric's). The
same loop runs with ``observe_request`` replaced by a no-op; the difference per request is the
metric's cost. Rounds alternate; the medians are printed. Then the cost of the token route's own
counter (``count_handout``).

Run: .venv/bin/python bench/metrics_overhead.py [--requests 50000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import sys
import tempfile
import time
from typing import Any

os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="bench-metrics-")

from personal_connectors.http import context
from personal_connectors.telemetry import metrics

ROUTE = "/v1/personal-connectors/{connection_id}/token"


class _Route:
    path = ROUTE


_MATCHED = _Route()


async def inner(scope: dict[str, Any], receive: Any, send: Any) -> None:
    scope["route"] = _MATCHED
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


async def run(requests: int) -> float:
    middleware = context.RequestContextMiddleware(inner, max_body_bytes=65536)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: dict[str, Any]) -> None:
        return None

    started = time.perf_counter()
    for _ in range(requests):
        scope = {
            "type": "http",
            "method": "POST",
            "path": "/v1/personal-connectors/conn_1/token",
            "query_string": b"",
            "headers": [],
        }
        await middleware(scope, receive, send)
    return (time.perf_counter() - started) / requests


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    logging.getLogger("personal_connectors.access").disabled = True
    recorded = context.observe_request
    with_metric: list[float] = []
    without: list[float] = []
    for _ in range(args.rounds):
        context.observe_request = recorded  # type: ignore[assignment]
        with_metric.append(asyncio.run(run(args.requests)))
        context.observe_request = lambda *_: None  # type: ignore[assignment]
        without.append(asyncio.run(run(args.requests)))
    on, off = statistics.median(with_metric), statistics.median(without)
    print(f"middleware with the metric:    {on * 1e6:.2f} µs a request")
    print(f"middleware without the metric: {off * 1e6:.2f} µs a request")
    print(f"the metric adds:               {(on - off) * 1e6:.2f} µs a request")
    started = time.perf_counter()
    for _ in range(args.requests):
        metrics.count_handout("github", "current")
    handout = (time.perf_counter() - started) / args.requests
    print(f"a token hand-out's counter:    {handout * 1e6:.2f} µs")
    sys.exit(0)


if __name__ == "__main__":
    main()
