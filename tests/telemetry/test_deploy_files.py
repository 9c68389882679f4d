"""The Prometheus alert rules and the Grafana dashboard in ``deploy/`` (SPEC §12): the rules are
well-formed (and ``promtool`` accepts them where it is installed), and every series and label
they and the dashboard ask for is on ``/metrics`` of the running service after a little traffic.

PromQL is read with a small, strict reader (``used_series``): it empties string literals, takes
out label matchers (``{…}``, whose label names it keeps), ranges (``[…]``) and the label lists of
``by``, ``without``, ``on``, ``ignoring`` and ``group_*`` (kept too); every identifier left that
is not a function (followed by ``(``) or a keyword is a metric name.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.conftest import make_tenant
from tests.support.upstream_api import PROXY_KEY
from tests.support.webhook_receiver import WebhookReceiver
from tests.telemetry.conftest import Observed, Samples, connect_account, hand_out
from tests.webhooks.conftest import add_webhook

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
DASHBOARD = DEPLOY / "grafana" / "personal-connectors.json"
# Made by Prometheus itself for every target, not by the service.
SCRAPE_SERIES = {"up"}
TARGET_LABELS = {"instance", "job"}
KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right",
    "and", "or", "unless", "bool", "offset", "inf", "nan",
}  # fmt: skip

_STRING = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
_SELECTOR = re.compile(r"([A-Za-z_:][\w:]*)?\s*\{([^{}]*)\}")
_MATCHER = re.compile(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_LABEL_LIST = re.compile(
    r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^()]*)\)", re.IGNORECASE
)
_IDENTIFIER = re.compile(r"(?<![\w:.$])([A-Za-z_:][\w:]*)(\s*\()?")
_LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(?:(.+?)\s*,\s*)?([A-Za-z_]\w*)\s*\)\s*$")


@dataclass
class Used:
    """What one expression asks for: metric names, the labels its matchers name (per metric),
    and the labels of its grouping clauses."""

    metrics: set[str] = field(default_factory=set)
    matched: dict[str, set[str]] = field(default_factory=dict)
    grouped: set[str] = field(default_factory=set)


def used_series(expr: str) -> Used:
    used = Used()
    text = _STRING.sub('""', expr)  # label values may hold braces: "/x/{id}"
    for name, matchers in _SELECTOR.findall(text):
        if name:
            used.matched.setdefault(name, set()).update(_MATCHER.findall(matchers))
    text = _SELECTOR.sub(lambda m: f" {m.group(1) or ''} ", text)
    text = _RANGE.sub(" ", text)
    for labels in _LABEL_LIST.findall(text):
        used.grouped.update(label.strip() for label in labels.split(",") if label.strip())
    text = _LABEL_LIST.sub(" ", text)
    for name, call in _IDENTIFIER.findall(text):
        if not call and name.lower() not in KEYWORDS:
            used.metrics.add(name)
    used.metrics.update(used.matched)
    return used


def test_the_reader_finds_names_labels_and_nothing_else() -> None:
    found = used_series(
        'histogram_quantile(0.99, sum by (le, route) (rate(a_bucket{route="/x/{id}", '
        'status=~"5..|4.."}[5m]))) / ignoring(route) b_total > 0.5 and on (instance) up == 0'
    )
    assert found.metrics == {"a_bucket", "b_total", "up"}
    assert found.matched == {"a_bucket": {"route", "status"}}
    assert found.grouped == {"le", "route", "instance"}
    assert used_series("max(x{" + 'instance=~"$instance"})').matched == {"x": {"instance"}}


def alert_rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(ALERTS.read_text())
    rules = [rule for group in document["groups"] for rule in group["rules"]]
    assert rules
    return rules


def test_the_alert_rules_are_well_formed() -> None:
    names = []
    for rule in alert_rules():
        assert set(rule) == {"alert", "expr", "for", "labels", "annotations"}, rule
        names.append(rule["alert"])
        assert re.fullmatch(r"\d+[smh]", str(rule["for"])), rule["for"]
        assert rule["labels"]["severity"] in {"critical", "warning"}
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        assert used_series(rule["expr"]).metrics, rule["expr"]
    assert len(names) == len(set(names))
    promtool = shutil.which("promtool")
    if promtool:  # Debian's `prometheus` package: its own parser, on top of the checks above
        checked = subprocess.run(
            [promtool, "check", "rules", str(ALERTS)], capture_output=True, text=True, timeout=60
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr


def dashboard_queries() -> list[Used]:
    dashboard = json.loads(DASHBOARD.read_text())
    queries = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            queries.append(used_series(target["expr"]))
    for variable in dashboard["templating"]["list"]:
        if variable["type"] != "query":
            continue
        query = variable["query"]
        match = _LABEL_VALUES.match(query["query"] if isinstance(query, dict) else query)
        assert match, variable
        used = used_series(match.group(1) or "")
        used.grouped.add(match.group(2))
        queries.append(used)
    assert len(queries) >= 10
    return queries


def little_traffic(observed: Observed, api: httpx.Client) -> Samples:
    """A connection, its token handed out and refreshed, a webhook delivered, a proxied request,
    and the refresher and pool sampler heard from."""
    receiver = WebhookReceiver()
    try:
        tenant = make_tenant(observed.service)
        add_webhook(api, tenant, receiver.url(), event_types=["connection.created"])
        connection_id = connect_account(api, tenant)
        assert hand_out(api, tenant, connection_id).status_code == 200
        assert hand_out(api, tenant, connection_id, force_refresh="true").status_code == 200
        proxy_connection = connect_account(api, tenant, PROXY_KEY)
        proxied = api.get(
            f"/{proxy_connection}/proxy/echo", params=tenant.org, headers=tenant.headers
        )
        assert proxied.status_code == 200
        return observed.wait_for_metric(
            lambda samples: (
                samples.has("connectors_webhook_deliveries_total")
                and samples.has("connectors_proxy_requests_total")
                and samples.has("connectors_refresher_lag_seconds")
                and samples.has("connectors_db_pool_connections")
            ),
            "the delivery, a refresher pass and a pool sample",
        )
    finally:
        receiver.close()


def test_every_series_the_rules_and_dashboard_use_is_on_metrics(
    observed: Observed, observed_api: httpx.Client
) -> None:
    samples = little_traffic(observed, observed_api)
    queries = [used_series(rule["expr"]) for rule in alert_rules()] + dashboard_queries()
    for used in queries:
        metrics = used.metrics - SCRAPE_SERIES
        for name in metrics:
            assert name in samples.names, f"{name} is not on /metrics"
        for name, labels in used.matched.items():
            if name not in SCRAPE_SERIES:
                assert labels <= samples.labels_of(name) | TARGET_LABELS, (name, labels)
        known = set().union(*(samples.labels_of(name) for name in metrics)) | TARGET_LABELS
        assert used.grouped <= known | {"le"}, (used.grouped, metrics)
