"""What the proxy tests share: the upstream API reset around each test, connections made
through the real OpenID provider at the proxy's test entries, and proxied calls."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import Tenant
from tests.flows.conftest import authorize_and_consent, follow_callback
from tests.support.db import event_types
from tests.support.service import ServiceProcess
from tests.support.upstream_api import PROXY_KEY, UpstreamApi

REFRESHED = "connection.refreshed"


@pytest.fixture
def upstream(upstream_api: UpstreamApi) -> Iterator[UpstreamApi]:
    upstream_api.reset()
    yield upstream_api
    upstream_api.release()  # nothing the test left waiting holds the server
    upstream_api.reset()


def connect_to(
    api: httpx.Client, caller: Tenant, connector_type: str = PROXY_KEY, *, login: str | None = None
) -> str:
    """A connection of an account (a fresh one unless ``login`` names it) at
    ``connector_type``, through the whole flow."""
    flow = authorize_and_consent(
        api, caller, login=login or f"user-{os.urandom(4).hex()}", connector_type=connector_type
    )
    response = follow_callback(flow.callback_url)
    assert response.status_code == 200, response.text
    return str(response.json()["data"]["connection_id"])


def proxied(
    api: httpx.Client,
    caller: Tenant,
    connection_id: str,
    path: str,
    method: str = "GET",
    *,
    params: dict[str, Any] | None = None,
    **kwargs: Any,
) -> httpx.Response:
    return api.request(
        method,
        f"/{connection_id}/proxy/{path}",
        params={**caller.org, **(params or {})},
        headers={**caller.headers, **kwargs.pop("headers", {})},
        **kwargs,
    )


def is_envelope(response: httpx.Response, status: int, code: str) -> bool:
    """The service's own refusal: the envelope, and no mark of the provider."""
    body = response.json()
    return (
        response.status_code == status
        and body["success"] is False
        and body["error"]["code"] == code
        and "x-connectors-proxy" not in response.headers
    )


def refreshes(service: ServiceProcess, connection_id: str) -> int:
    """How many refreshes the connection's audit events record."""
    return event_types(service, connection_id).count(REFRESHED)
