"""The shipped nginx config (deploy/nginx/) on its own: nginx accepts it, its own errors are the
service's envelope, and its timeouts fit the service's. Fast; the fault test
(test_n_instances.py) runs the same config in front of real instances."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from personal_connectors.config import Settings
from personal_connectors.flows.schemas import MAX_COMPLETE_WAIT_SECONDS
from tests.support import web
from tests.support.envelope import is_envelope
from tests.support.nginx import DEPLOY_CONF, Nginx
from tests.support.oidc import free_port

CONNECTION = "conn_" + "a" * 32


@pytest.fixture(scope="module")
def nginx_without_instances(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nginx]:
    """nginx with the deployment's config, in front of instances that are all down."""
    down = [free_port(), free_port()]
    proxy = Nginx(tmp_path_factory.mktemp("nginx"), down, free_port()).start()
    yield proxy
    proxy.stop()


def assert_envelope(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert is_envelope(body, status), body
    assert body["error"]["code"] == code
    assert re.fullmatch(r"req_[0-9a-f]{32}", body["error"]["trace_id"])
    assert response.headers["x-request-id"] == body["error"]["trace_id"]
    assert body["error"]["timestamp"].endswith("Z")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", f"/v1/personal-connectors/{CONNECTION}/token"),
        ("POST", "/v1/personal-connectors/complete-oauth"),
        ("POST", "/v1/personal-connectors/authorize"),
        ("GET", "/v1/personal-connectors/callback?code=x&state=y"),
        ("GET", f"/v1/personal-connectors/{CONNECTION}/proxy/user"),
        ("GET", "/readyz"),
    ],
)
def test_no_instance_up_is_a_503_envelope_with_retry_after(
    nginx_without_instances: Nginx, method: str, path: str
) -> None:
    response = web.request(method, nginx_without_instances.base_url + path, timeout=30)
    assert_envelope(response, 503, "SERVICE_UNAVAILABLE")
    assert response.headers["retry-after"] == "2"


def test_nginx_own_limits_answer_in_the_envelope(nginx_without_instances: Nginx) -> None:
    base = nginx_without_instances.base_url
    too_large = web.post(f"{base}/v1/personal-connectors/authorize", content=b"x" * 2_000_000)
    assert_envelope(too_large, 413, "PAYLOAD_TOO_LARGE")
    huge_header = web.get(f"{base}/livez", headers={"X-Big": "a" * 70_000})
    assert_envelope(huge_header, 400, "VALIDATION_ERROR")


def test_metrics_are_not_served_through_the_proxy(nginx_without_instances: Nginx) -> None:
    response = web.get(f"{nginx_without_instances.base_url}/metrics", timeout=30)
    assert_envelope(response, 404, "RESOURCE_NOT_FOUND")


def seconds(directive: str) -> float:
    """The value of a timeout directive in the shipped config, in seconds."""
    found = re.findall(rf"^\s*{directive}\s+(\d+)s;", DEPLOY_CONF.read_text(), re.M)
    assert len(found) == 1, directive
    return float(found[0])


def test_the_timeouts_fit_the_service() -> None:
    def default(name: str) -> float:
        return float(Settings.model_fields[name].default)

    # nginx drops an idle upstream connection before the service would close it under it.
    assert seconds("keepalive_timeout") < default("http_keep_alive_seconds")
    # A complete-oauth long-poll (up to 60 s) and a token request waiting for a refresh are
    # answered before nginx gives up on the instance.
    assert seconds("proxy_read_timeout") > MAX_COMPLETE_WAIT_SECONDS
    assert seconds("proxy_read_timeout") > default("refresh_wait_seconds")
    # A proxied call runs to the service's own limit, which answers 504 in the envelope.
    assert seconds("proxy_read_timeout") > default("proxy_timeout_seconds")


def test_proxied_bodies_reach_the_service_s_own_limit() -> None:
    """nginx lets through what the proxy route takes, so the service answers the 413 (and the
    body streams: no buffering on that route)."""
    text = DEPLOY_CONF.read_text()
    start = text.index('{32}/proxy/" {')
    route = text[start : text.index("}", start + len('{32}/proxy/" {'))]
    megabytes = re.search(r"client_max_body_size (\d+)m;", route)
    assert megabytes is not None
    limit = Settings.model_fields["proxy_max_body_bytes"].default
    assert int(megabytes.group(1)) * 1024 * 1024 > limit
    assert "proxy_request_buffering off;" in route and "proxy_buffering off;" in route


def test_the_config_names_no_instance_port_the_systemd_target_does_not_start() -> None:
    """nginx's upstream and the target's instances are one list, kept in step."""
    upstream = set(re.findall(r"server 127\.0\.0\.1:(\d+)", DEPLOY_CONF.read_text()))
    target = Path(DEPLOY_CONF).parents[1] / "systemd" / "personal-connectors.target"
    started = set(re.findall(r"personal-connectors@(\d+)\.service", target.read_text()))
    assert upstream == started and upstream
