"""``GET /metrics`` (SPEC §12) on a real ``serve --workers 2 --refresher``: each series moves when
its event happens, the counts of both workers add up, and the metrics token guards it."""

from __future__ import annotations

import json
import time

import httpx

from tests.conftest import PROVIDER_KEY, make_tenant
from tests.support import web
from tests.support.envelope import is_envelope
from tests.support.upstream_api import PROXY_KEY
from tests.support.webhook_receiver import WebhookReceiver
from tests.telemetry.conftest import WORKERS, Observed, Samples, connect_account, hand_out
from tests.webhooks.conftest import add_webhook

REQUESTS = "connectors_http_request_duration_seconds_count"
BUCKETS = "connectors_http_request_duration_seconds_bucket"
HANDOUTS = "connectors_token_handouts_total"
REFRESHES = "connectors_token_refreshes_total"
DELIVERIES = "connectors_webhook_deliveries_total"
PROXIED = "connectors_proxy_requests_total"
TOKEN_ROUTE = "/v1/personal-connectors/{connection_id}/token"
PROXY_ROUTE = "/v1/personal-connectors/{connection_id}/proxy/{path:path}"


def test_metrics_answer_only_with_the_metrics_token(observed: Observed) -> None:
    url = f"{observed.service.base_url}/metrics"
    for headers in (
        {},
        {"Authorization": f"Bearer {observed.metrics_token}x"},
        {"Authorization": f"Basic {observed.metrics_token}"},
        {"X-API-Key": observed.metrics_token},
    ):
        refused = web.get(url, headers=headers)
        assert refused.status_code == 401, headers
        assert is_envelope(refused.json(), 401)
        assert refused.json()["error"]["code"] == "AUTHENTICATION_REQUIRED"
        assert refused.headers["www-authenticate"].startswith("Bearer")
        assert observed.metrics_token not in refused.text
    answered = web.get(url, headers=observed.metrics_headers)
    assert answered.status_code == 200
    assert "# TYPE connectors_http_request_duration_seconds histogram" in answered.text


def test_requests_count_by_route_template_method_and_status(observed: Observed) -> None:
    tenant = make_tenant(observed.service)
    before = observed.scrape()
    base = observed.service.base_url
    for _ in range(3):
        assert web.get(f"{base}/livez").status_code == 200
    missing = web.post(
        f"{observed.service.api}/conn_not_there_7/token", params=tenant.org, headers=tenant.headers
    )
    assert missing.status_code == 404
    assert web.get(f"{base}/no/such/page").status_code == 404

    def moved(after: Samples) -> bool:
        livez = after.get(REQUESTS, route="/livez", method="GET", status="200")
        token = after.get(REQUESTS, route=TOKEN_ROUTE, method="POST", status="404")
        unmatched = after.get(REQUESTS, route="unmatched", method="GET", status="404")
        return (
            livez - before.get(REQUESTS, route="/livez", method="GET", status="200") == 3
            and token - before.get(REQUESTS, route=TOKEN_ROUTE, method="POST", status="404") == 1
            and unmatched - before.get(REQUESTS, route="unmatched", status="404") == 1
        )

    after = observed.wait_for_metric(moved, "the requests' counts")
    # A histogram: every request is in the +Inf bucket, and the routes are templates only.
    assert after.get(BUCKETS, route="/livez", status="200", le="+Inf") == after.get(
        REQUESTS, route="/livez", status="200"
    )
    routes = {dict(labels).get("route") for name, labels in after.values if name == REQUESTS}
    assert not any("conn_not_there_7" in str(route) or "/no/such" in str(route) for route in routes)


def test_token_handouts_and_refreshes_count_by_provider_and_outcome(
    observed: Observed, observed_api: httpx.Client
) -> None:
    tenant = make_tenant(observed.service)
    connection_id = connect_account(observed_api, tenant)
    before = observed.scrape()

    assert hand_out(observed_api, tenant, connection_id).status_code == 200
    assert hand_out(observed_api, tenant, connection_id, force_refresh="true").status_code == 200
    lacking = hand_out(observed_api, tenant, connection_id, required_scopes="not-granted")
    assert lacking.status_code == 409

    def delta(after: Samples, name: str, outcome: str) -> float:
        labels = {"provider": PROVIDER_KEY, "outcome": outcome}
        return after.get(name, **labels) - before.get(name, **labels)

    after = observed.wait_for_metric(
        lambda after: delta(after, HANDOUTS, "insufficient_scope") == 1, "the refused hand-out"
    )
    assert delta(after, HANDOUTS, "current") == 1
    assert delta(after, HANDOUTS, "refreshed") == 1
    assert delta(after, REFRESHES, "refreshed") == 1  # the provider was asked once
    assert delta(after, REFRESHES, "failed") == 0


def test_proxied_requests_count_by_provider_and_the_providers_status(
    observed: Observed, observed_api: httpx.Client
) -> None:
    tenant = make_tenant(observed.service)
    connection_id = connect_account(observed_api, tenant, PROXY_KEY)
    before = observed.scrape()

    def proxied(path: str) -> httpx.Response:
        return observed_api.get(
            f"/{connection_id}/proxy/{path}", params=tenant.org, headers=tenant.headers
        )

    assert proxied("echo/a").status_code == 200
    assert proxied("status/404").status_code == 404  # the provider's answer, relayed

    def delta(after: Samples, name: str, **labels: str) -> float:
        return after.get(name, provider=PROXY_KEY, **labels) - before.get(
            name, provider=PROXY_KEY, **labels
        )

    after = observed.wait_for_metric(
        lambda after: delta(after, PROXIED, status="404") == 1, "the proxied requests"
    )
    assert delta(after, PROXIED, status="200") == 1
    assert delta(after, "connectors_proxy_request_duration_seconds_count") == 2
    # The proxy route is one template, whatever the path under it.
    assert after.has(REQUESTS, route=PROXY_ROUTE, method="GET", status="404")


def test_webhook_deliveries_count_each_attempt_by_outcome(
    observed: Observed, observed_api: httpx.Client
) -> None:
    receiver = WebhookReceiver()
    try:
        tenant = make_tenant(observed.service)
        add_webhook(observed_api, tenant, receiver.url(), event_types=["connection.created"])
        before = observed.scrape()
        receiver.fail_next(1)
        connect_account(observed_api, tenant)  # connection.created: refused once, then taken

        def delivered(after: Samples) -> bool:
            return (
                after.get(DELIVERIES, outcome="succeeded")
                - before.get(DELIVERIES, outcome="succeeded")
                == 1
            )

        after = observed.wait_for_metric(delivered, "the webhook's delivery")
        assert (
            after.get(DELIVERIES, outcome="retrying") - before.get(DELIVERIES, outcome="retrying")
            == 1
        )
        assert [item.answered for item in receiver.received] == [500, 204]
    finally:
        receiver.close()


def test_the_refresher_reports_its_passes_and_its_backlog(observed: Observed) -> None:
    first = observed.wait_for_metric(
        lambda samples: (
            samples.has("connectors_refresher_queue_depth")
            and samples.has("connectors_refresher_lag_seconds")
        ),
        "the refresher's first measurement",
    )
    # Its passes keep coming (one per interval and worker when idle).
    observed.wait_for_metric(
        lambda samples: (
            samples.get("connectors_refresher_passes_total")
            >= first.get("connectors_refresher_passes_total") + 2
        ),
        "further refresher passes",
    )
    assert first.get("connectors_refresher_queue_depth") >= 0
    assert first.get("connectors_refresher_lag_seconds") >= 0
    assert first.has("connectors_refresher_in_flight")


def test_database_pools_are_sampled(observed: Observed, observed_api: httpx.Client) -> None:
    tenant = make_tenant(observed.service)
    connection_id = connect_account(observed_api, tenant)
    assert hand_out(observed_api, tenant, connection_id).status_code == 200
    pools = {"main"}
    if "CONNECTORS_DATABASE_URL" in observed.service.env:
        pools.add("token_reader")  # PostgreSQL: the token path's own pool, opened on first use
    samples = observed.wait_for_metric(
        lambda samples: all(
            samples.has("connectors_db_pool_connections", pool=pool, state=state)
            for pool in pools
            for state in ("in_use", "idle")
        ),
        "the pools' samples",
    )
    total = sum(
        samples.get("connectors_db_pool_connections", pool="main", state=state)
        for state in ("in_use", "idle")
    )
    assert total >= 1  # the workers' engines hold connections


def test_counts_of_every_worker_add_up(observed: Observed) -> None:
    """Requests on new connections land on either worker; until both have served some, and
    then the count is the number sent, whichever worker answers the scrape."""
    log_offset = len(observed.service.logs())
    before = observed.scrape().get(REQUESTS, route="/readyz", status="200")
    sent = 0
    deadline = time.monotonic() + 60
    while True:
        for _ in range(10):
            assert web.get(f"{observed.service.base_url}/readyz").status_code == 200
            sent += 1
        if len(_workers_that_served(observed, log_offset, "/readyz")) == WORKERS:
            break
        assert time.monotonic() < deadline, "one worker served every request"
    for _ in range(4):  # a few scrapes: each may be answered by either worker
        observed.wait_for_metric(
            lambda samples: samples.get(REQUESTS, route="/readyz", status="200") - before == sent,
            f"{sent} requests counted",
        )


def _workers_that_served(observed: Observed, offset: int, route: str) -> set[int]:
    pids = set()
    for line in observed.service.logs()[offset:].splitlines():
        record = json.loads(line)
        if record["logger"] == "personal_connectors.access" and record.get("route") == route:
            pids.add(record["process"])
    return pids
