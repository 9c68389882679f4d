"""The service's Prometheus series (SPEC §12), each defined once here; the rest of the service
records through the functions below, never through ``prometheus_client`` itself.

Every series is named ``connectors_…``. Under ``connectors serve`` the values live in
prometheus-client's multiprocess files (``PROMETHEUS_MULTIPROC_DIR``, a private folder ``serve``
creates, see ``telemetry.folder``), so whichever worker answers ``GET /metrics`` reports the
sum over all workers; without that variable (tests that build the app in-process, one-off CLI
commands) the process's own registry is reported.

Label values are bounded: routes are templates (``/v1/personal-connectors/{connection_id}/token``,
``unmatched`` for a path no route takes), methods a fixed set, providers catalog keys, outcomes
and error codes fixed vocabularies. The children of a label set are looked up in a dict of
their own after the first use, so recording costs one dict lookup and the value's update.

The series (docs/guide.md, "Operating", lists them for operators) and who records them:

- ``connectors_http_request_duration_seconds`` (route, method, status), a histogram whose
  ``_count`` counts requests: ``http.context``;
- ``connectors_token_handouts_total`` (provider, outcome: ``current``, ``refreshed`` or the error
  code in lower case): ``tokens.service``;
- ``connectors_token_refreshes_total`` (provider, outcome: ``refreshed``, ``rejected``,
  ``rotation_lost``, ``failed``, ``cannot_refresh``, ``not_stored``): ``tokens.refresh``;
- ``connectors_refresher_passes_total``, ``…_queue_depth``, ``…_lag_seconds``, ``…_in_flight``:
  ``refresher.service``;
- ``connectors_webhook_deliveries_total`` (outcome: ``succeeded``, ``retrying``, ``failed``), one
  per attempt: ``webhooks.worker``;
- ``connectors_proxy_requests_total`` and ``connectors_proxy_request_duration_seconds``
  (provider, status): the proxy of SPEC §9, through ``record_proxy_request``;
- ``connectors_mcp_calls_total`` and ``connectors_mcp_call_duration_seconds`` (provider,
  status): MCP calls of SPEC §11, through ``record_mcp_call``;
- ``connectors_db_pool_connections`` (pool: ``main``, ``token_reader``; state: ``in_use``,
  ``idle``), sampled: ``health.sampler``.
"""

from __future__ import annotations

import glob
import os
import re
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from personal_connectors.telemetry.folder import MULTIPROCESS_ENV, process_alive

CONTENT_TYPE = CONTENT_TYPE_LATEST
# Request latencies: from a token handed out of memory (well under 5 ms) to a provider call.
REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Calls that go to a provider: tens of milliseconds to the provider timeout.
CALL_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
UNMATCHED_ROUTE = "unmatched"
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

HTTP_REQUEST_SECONDS = Histogram(
    "connectors_http_request_duration_seconds",
    "HTTP requests answered, by route template, method and status, and how long each took.",
    ["route", "method", "status"],
    buckets=REQUEST_BUCKETS,
)
TOKEN_HANDOUTS = Counter(
    "connectors_token_handouts",
    "Token requests for a known connection, by provider and outcome (current, refreshed, or "
    "the error code).",
    ["provider", "outcome"],
)
TOKEN_REFRESHES = Counter(
    "connectors_token_refreshes",
    "Refreshes sent to a provider (or found impossible), by provider and outcome.",
    ["provider", "outcome"],
)
REFRESHER_PASSES = Counter(
    "connectors_refresher_passes", "Claim passes of the background refresher."
)
REFRESHER_QUEUE_DEPTH = Gauge(
    "connectors_refresher_queue_depth",
    "Connections due for a refresh that no refresher has claimed yet (last measurement).",
    multiprocess_mode="livemostrecent",
)
REFRESHER_LAG_SECONDS = Gauge(
    "connectors_refresher_lag_seconds",
    "How long the most overdue unclaimed connection has been due for its refresh.",
    multiprocess_mode="livemostrecent",
)
REFRESHER_IN_FLIGHT = Gauge(
    "connectors_refresher_in_flight",
    "Refreshes the background refreshers run (or hold claimed) right now.",
    multiprocess_mode="livesum",
)
WEBHOOK_DELIVERIES = Counter(
    "connectors_webhook_deliveries",
    "Webhook delivery attempts, by outcome (succeeded, retrying, failed: given up).",
    ["outcome"],
)
PROXY_REQUESTS = Counter(
    "connectors_proxy_requests",
    "Requests proxied to a provider's API, by provider and the provider's status (or error).",
    ["provider", "status"],
)
PROXY_SECONDS = Histogram(
    "connectors_proxy_request_duration_seconds",
    "How long proxied requests took, by provider.",
    ["provider"],
    buckets=CALL_BUCKETS,
)
MCP_CALLS = Counter(
    "connectors_mcp_calls",
    "MCP tool calls made for a connection, by provider and status.",
    ["provider", "status"],
)
MCP_SECONDS = Histogram(
    "connectors_mcp_call_duration_seconds",
    "How long MCP calls took, by provider.",
    ["provider"],
    buckets=CALL_BUCKETS,
)
DB_POOL_CONNECTIONS = Gauge(
    "connectors_db_pool_connections",
    "Database connections of each pool, in use or idle (sampled).",
    ["pool", "state"],
    multiprocess_mode="livesum",
)

# Label children already made, by their label values (``labels()`` itself costs more than the
# update it prepares).
_request_children: dict[tuple[str, str, int], Any] = {}
_handout_children: dict[tuple[str, str], Any] = {}


def observe_request(route: str | None, method: str, status: int, seconds: float) -> None:
    """One HTTP request answered: ``route`` is the matched route's template (None: none)."""
    key = (route or UNMATCHED_ROUTE, method, status)
    child = _request_children.get(key)
    if child is None:
        label = method if method in KNOWN_METHODS else "other"
        child = HTTP_REQUEST_SECONDS.labels(key[0], label, str(status))
        _request_children[key] = child
    child.observe(seconds)


def count_handout(provider: str, outcome: str) -> None:
    """A token request for a connection of ``provider``: ``current``, ``refreshed``, or the
    error code (lower case) it was refused with."""
    key = (provider, outcome)
    child = _handout_children.get(key)
    if child is None:
        child = _handout_children[key] = TOKEN_HANDOUTS.labels(provider, outcome)
    child.inc()


def count_refresh(provider: str, outcome: str) -> None:
    TOKEN_REFRESHES.labels(provider, outcome).inc()


def count_refresher_pass(queue_depth: int | None = None, lag_seconds: float | None = None) -> None:
    """A claim pass; with its measurement of the backlog when it took one."""
    REFRESHER_PASSES.inc()
    if queue_depth is not None:
        REFRESHER_QUEUE_DEPTH.set(queue_depth)
    if lag_seconds is not None:
        REFRESHER_LAG_SECONDS.set(lag_seconds)


def set_refresher_in_flight(count: int) -> None:
    REFRESHER_IN_FLIGHT.set(count)


def count_webhook_delivery(outcome: str) -> None:
    WEBHOOK_DELIVERIES.labels(outcome).inc()


def record_proxy_request(provider: str, status: int | str, seconds: float) -> None:
    """A request proxied to ``provider``'s API (SPEC §9): the provider's status code, or a
    word for a call that got none (``timeout``, ``refused``, …)."""
    PROXY_REQUESTS.labels(provider, str(status)).inc()
    PROXY_SECONDS.labels(provider).observe(seconds)


def record_mcp_call(provider: str, status: int | str, seconds: float) -> None:
    """An MCP call made for a connection of ``provider`` (SPEC §11), as ``record_proxy_request``."""
    MCP_CALLS.labels(provider, str(status)).inc()
    MCP_SECONDS.labels(provider).observe(seconds)


def set_pool_connections(pool: str, in_use: int, idle: int) -> None:
    DB_POOL_CONNECTIONS.labels(pool, "in_use").set(in_use)
    DB_POOL_CONNECTIONS.labels(pool, "idle").set(idle)


def exposition() -> bytes:
    """The text ``GET /metrics`` answers: every worker's values under ``serve``."""
    folder = os.environ.get(MULTIPROCESS_ENV)
    if not folder:
        return generate_latest(REGISTRY)
    _forget_dead_workers(folder)
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=folder)  # type: ignore[no-untyped-call]
    return generate_latest(registry)


# The files a process's "live" gauges are kept in: gauge_livesum_1234.db.
_LIVE_FILE = re.compile(r"gauge_live[a-z]+_(\d+)\.db$")


def _forget_dead_workers(folder: str) -> None:
    """Live gauges (pool use, refreshes running) of a worker that died (a restarted or killed
    one: uvicorn tells nobody) would count on forever; their files go once its process is gone.
    A worker that stops normally removes its own (``worker_stopped``)."""
    for path in glob.glob(os.path.join(folder, "gauge_live*_*.db")):
        match = _LIVE_FILE.search(path)
        if match and not process_alive(int(match.group(1))):
            mark_process_dead(int(match.group(1)), folder)  # type: ignore[no-untyped-call]


def worker_stopped() -> None:
    """This worker is stopping: its live gauges stop counting (its counters keep their sums)."""
    folder = os.environ.get(MULTIPROCESS_ENV)
    if folder:
        mark_process_dead(os.getpid(), folder)  # type: ignore[no-untyped-call]
