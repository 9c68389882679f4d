"""Incremental authorization: asking again with more scopes updates the same connection, which
then records what the provider granted — not what was asked."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.conftest import CLIENT_ID, CLIENT_SECRET, FAULTY_KEY, PROVIDER_KEY, Tenant
from tests.flows.conftest import assert_flow_failed, authorize_and_consent, follow_callback
from tests.support.db import event_types
from tests.support.envelope import is_envelope
from tests.support.service import ServiceProcess


@pytest.fixture
def openid_only(api: httpx.Client, tenant: Tenant) -> Iterator[None]:
    """The organization's own app for local-oidc asks for `openid` alone by default."""
    response = api.put(
        f"/apps/{PROVIDER_KEY}",
        params=tenant.org,
        headers=tenant.headers,
        json={"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "scopes": ["openid"]},
    )
    assert response.status_code == 200, response.text
    yield


def connect_with(api: httpx.Client, tenant: Tenant, login: str = "alice", **body: Any) -> str:
    flow = authorize_and_consent(api, tenant, login=login, **body)
    response = follow_callback(flow.callback_url)
    assert response.status_code == 200, response.text
    return str(response.json()["data"]["connection_id"])


def asked_scopes(authorization_url: str) -> set[str]:
    return set(parse_qs(urlsplit(authorization_url).query)["scope"][0].split())


def get_connection(api: httpx.Client, tenant: Tenant, connection_id: str) -> dict[str, Any]:
    response = api.get(f"/{connection_id}", params=tenant.org, headers=tenant.headers)
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_more_scopes_update_the_same_connection_with_what_was_granted(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess, openid_only: None
) -> None:
    first = connect_with(api, tenant)
    assert get_connection(api, tenant, first)["scopes"] == ["openid"]

    # `phone` is not a scope this provider knows: it is asked for, but not granted.
    flow = authorize_and_consent(api, tenant, scopes=["email", "profile", "phone"])
    assert asked_scopes(flow.authorize["authorization_url"]) == {
        "openid",
        "email",
        "profile",
        "phone",
    }
    callback = follow_callback(flow.callback_url)
    assert callback.status_code == 200, callback.text
    assert callback.json()["data"]["connection_id"] == first

    shown = get_connection(api, tenant, first)
    assert set(shown["scopes"]) == {"openid", "email", "profile"}
    assert shown["account_email"] == "alice@example.test"  # the email scope now reads it
    [listed] = api.get("", params=tenant.org, headers=tenant.headers).json()
    assert listed["id"] == first and listed["scopes"] == shown["scopes"]
    assert event_types(service, first) == ["connection.created", "connection.reauthorized"]


def test_connection_id_asks_for_its_scopes_again_with_the_new_ones(
    api: httpx.Client, tenant: Tenant, openid_only: None
) -> None:
    first = connect_with(api, tenant, scopes=["email"])
    assert set(get_connection(api, tenant, first)["scopes"]) == {"openid", "email"}

    flow = authorize_and_consent(api, tenant, connection_id=first, scopes=["profile"])
    # Without connection_id only openid + profile would be asked, and email would be lost.
    assert asked_scopes(flow.authorize["authorization_url"]) == {"openid", "email", "profile"}
    assert follow_callback(flow.callback_url).json()["data"]["connection_id"] == first
    assert set(get_connection(api, tenant, first)["scopes"]) == {"openid", "email", "profile"}


def test_extending_a_connection_with_another_account_fails_the_flow(
    api: httpx.Client, tenant: Tenant, openid_only: None
) -> None:
    first = connect_with(api, tenant, login="alice")
    flow = authorize_and_consent(api, tenant, login="bob", connection_id=first, scopes=["email"])
    assert_flow_failed(api, tenant, flow, "account_mismatch")
    # Nothing was connected for bob, and alice's connection kept its scopes.
    [only] = api.get("", params=tenant.org, headers=tenant.headers).json()
    assert only["id"] == first and only["scopes"] == ["openid"]


def test_connection_id_must_be_the_callers_and_of_the_same_connector(
    api: httpx.Client, tenant: Tenant, other_tenant: Tenant, openid_only: None
) -> None:
    mine = connect_with(api, tenant)

    foreign = api.post(
        "/authorize",
        params=other_tenant.org,
        headers=other_tenant.headers,
        json={"connector_type": PROVIDER_KEY, "connection_id": mine},
    )
    assert foreign.status_code == 404 and is_envelope(foreign.json(), 404)
    assert foreign.json()["error"]["code"] == "RESOURCE_NOT_FOUND"

    other_connector = api.post(
        "/authorize",
        params=tenant.org,
        headers=tenant.headers,
        json={"connector_type": FAULTY_KEY, "connection_id": mine},
    )
    assert other_connector.status_code == 400 and is_envelope(other_connector.json(), 400)
    assert other_connector.json()["error"]["details"]["fields"] == ["connection_id"]
