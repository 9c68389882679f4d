"""POST /{id}/token?required_scopes=…: a connection that lacks a scope the caller needs is
refused with 409 INSUFFICIENT_SCOPE, naming the missing scopes and the POST /authorize body that
asks the user for them on this connection; after the user consents there, the same call answers."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import CLIENT_ID, CLIENT_SECRET, MEMBER_PARAM_KEY, PROVIDER_KEY, Tenant
from tests.flows.conftest import authorize_and_consent, follow_callback
from tests.support.db import connection_row, event_types, set_expiry
from tests.support.envelope import is_envelope
from tests.support.oidc import login_and_consent
from tests.support.service import ServiceProcess


def token(api: httpx.Client, tenant: Tenant, connection_id: str, **params: str) -> httpx.Response:
    return api.post(
        f"/{connection_id}/token", params={**tenant.org, **params}, headers=tenant.headers
    )


def connect_asking(api: httpx.Client, tenant: Tenant, connector_type: str, **body: Any) -> str:
    """A connection of ``connector_type`` granted `openid` (all the organization's app asks
    for) and the ``scopes`` in ``body``."""
    response = api.put(
        f"/apps/{connector_type}",
        params=tenant.org,
        headers=tenant.headers,
        json={"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "scopes": ["openid"]},
    )
    assert response.status_code == 200, response.text
    flow = authorize_and_consent(api, tenant, connector_type=connector_type, **body)
    return consented(flow.callback_url)


def consented(callback_url: str) -> str:
    callback = follow_callback(callback_url)
    assert callback.status_code == 200, callback.text
    return str(callback.json()["data"]["connection_id"])


@pytest.fixture
def connected_with_email(api: httpx.Client, tenant: Tenant) -> str:
    """A connection granted `openid email` only."""
    return connect_asking(api, tenant, PROVIDER_KEY, scopes=["email"])


def insufficient(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 409, response.text
    assert is_envelope(response.json(), 409)
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == "INSUFFICIENT_SCOPE" and error["type"] == "client_error"
    return error


def test_a_missing_scope_is_refused_with_the_authorize_body_that_asks_for_it(
    api: httpx.Client, tenant: Tenant, connected_with_email: str
) -> None:
    connection_id = connected_with_email
    error = insufficient(token(api, tenant, connection_id, required_scopes="email profile"))
    assert error["details"] == {
        "missing_scopes": ["profile"],
        "authorize": {
            "connector_type": PROVIDER_KEY,
            "connection_id": connection_id,
            "scopes": ["profile"],
        },
    }
    assert "profile" in error["system_message"] and "/authorize" in error["system_message"]

    # The platform sends the user through that authorization: the provider asks for the
    # connection's scopes and the missing one, and the same connection is updated.
    assert authorize_as_told(api, tenant, error) == connection_id

    answered = token(api, tenant, connection_id, required_scopes="email profile")
    assert answered.status_code == 200, answered.text
    assert {"openid", "email", "profile"} <= set(answered.json()["scopes"])
    assert answered.json()["connection_id"] == connection_id


def authorize_as_told(api: httpx.Client, tenant: Tenant, error: dict[str, Any]) -> str:
    """POST /authorize with the refusal's body, the user's consent, the callback: the id of
    the connection it updated."""
    started = api.post(
        "/authorize", params=tenant.org, headers=tenant.headers, json=error["details"]["authorize"]
    )
    assert started.status_code == 200, started.text
    return consented(login_and_consent(started.json()["authorization_url"]))


def test_the_authorize_body_keeps_the_values_the_connection_was_made_with(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess
) -> None:
    """A connector whose connections each carry a caller's value (a Zendesk subdomain): the
    body names none, and extending the connection keeps its own."""
    connection_id = connect_asking(
        api, tenant, MEMBER_PARAM_KEY, integration_params={"workspace": "acme"}
    )
    error = insufficient(token(api, tenant, connection_id, required_scopes="email"))
    assert set(error["details"]["authorize"]) == {"connector_type", "connection_id", "scopes"}
    assert authorize_as_told(api, tenant, error) == connection_id
    assert token(api, tenant, connection_id, required_scopes="email").status_code == 200
    assert connection_row(service, connection_id).integration_params == {"workspace": "acme"}


def test_the_scopes_it_has_and_an_empty_value_answer_as_without_the_parameter(
    api: httpx.Client, tenant: Tenant, connected_with_email: str
) -> None:
    plain = token(api, tenant, connected_with_email)
    assert plain.status_code == 200, plain.text
    for value in ("email", "openid email", "email  openid email", "", " "):
        response = token(api, tenant, connected_with_email, required_scopes=value)
        assert response.status_code == 200, (value, response.text)
        assert response.json() == plain.json()


def test_every_missing_scope_is_named_once_in_the_order_asked(
    api: httpx.Client, tenant: Tenant, connected_with_email: str
) -> None:
    error = insufficient(
        token(api, tenant, connected_with_email, required_scopes="profile email phone profile")
    )
    assert error["details"]["missing_scopes"] == ["profile", "phone"]
    assert error["details"]["authorize"]["scopes"] == ["profile", "phone"]


def test_the_refusal_comes_before_a_refresh(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess, connected_with_email: str
) -> None:
    """A token inside its refresh margin is not refreshed for a call that is refused anyway."""
    set_expiry(service, connected_with_email, 30)
    insufficient(token(api, tenant, connected_with_email, required_scopes="profile"))
    assert event_types(service, connected_with_email) == ["connection.created"]


MALFORMED = ["email\tprofile", "caf\u00e9", "x" * 201, " ".join(f"s{i}" for i in range(51))]


@pytest.mark.parametrize("value", MALFORMED)
def test_a_malformed_value_is_a_validation_error(
    api: httpx.Client, tenant: Tenant, connected_with_email: str, value: str
) -> None:
    # Validation comes before the lookup, as on every route: an unknown connection gets the
    # same 400, not a 404.
    for connection_id in (connected_with_email, "conn_" + "0" * 32):
        response = token(api, tenant, connection_id, required_scopes=value)
        assert response.status_code == 400, response.text
        assert is_envelope(response.json(), 400)
        assert response.json()["error"]["details"]["fields"] == ["required_scopes"]
