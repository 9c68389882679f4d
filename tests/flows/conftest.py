"""Helpers to drive the whole OAuth flow through the service and the real provider."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.conftest import PROVIDER_KEY, Tenant
from tests.support import web
from tests.support.oidc import login_and_consent


@dataclass
class StartedFlow:
    authorize: dict[str, Any]
    callback_url: str

    @property
    def state(self) -> str:
        return str(self.authorize["state"])

    @property
    def query(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(urlsplit(self.callback_url).query).items()}


def start_flow(api: httpx.Client, tenant: Tenant, **body: Any) -> dict[str, Any]:
    response = api.post(
        "/authorize",
        params=tenant.org,
        headers=tenant.headers,
        json={"connector_type": PROVIDER_KEY, **body},
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def authorize_and_consent(
    api: httpx.Client, tenant: Tenant, *, login: str = "alice", deny: bool = False, **body: Any
) -> StartedFlow:
    started = start_flow(api, tenant, **body)
    return StartedFlow(
        started, login_and_consent(started["authorization_url"], login=login, deny=deny)
    )


def follow_callback(callback_url: str, accept: str = "application/json") -> httpx.Response:
    """What the user's browser does when the provider sends it back (redirects not followed)."""
    return web.get(callback_url, headers={"Accept": accept}, timeout=30, follow_redirects=False)


def assert_flow_failed(api: httpx.Client, tenant: Tenant, flow: StartedFlow, error: str) -> None:
    """The callback answers 400 with ``error`` and complete-oauth reports the same failure."""
    response = follow_callback(flow.callback_url)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["details"]["error"] == error
    completed = api.post(
        "/complete-oauth",
        params=tenant.org,
        headers=tenant.headers,
        json={"state_token": flow.state},
    ).json()
    assert completed["connected"] is False and completed["connection"] is None
    assert completed["error"]["code"] == error


def connect(api: httpx.Client, tenant: Tenant, *, login: str = "alice") -> str:
    flow = authorize_and_consent(api, tenant, login=login)
    response = follow_callback(flow.callback_url)
    assert response.status_code == 200, response.text
    return str(response.json()["data"]["connection_id"])


@pytest.fixture
def connected(api: httpx.Client, tenant: Tenant) -> str:
    return connect(api, tenant)
