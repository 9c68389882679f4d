"""POST /{id}/token: a current token without any refresh, a due one refreshed first, a rejected
refresh token turned into needs_reauth, and the refresh token never returned."""

from __future__ import annotations

import tempfile
from pathlib import Path

import httpx

from personal_connectors.app import create_app
from personal_connectors.config import API_PREFIX, Settings
from tests.conftest import CLIENT_ID, CLIENT_SECRET, Tenant
from tests.flows.conftest import connect
from tests.support import web
from tests.support.db import (
    connection_row,
    event_types,
    set_expiry,
    stored_tokens,
    update_connection,
)
from tests.support.oidc import OidcProvider, token_request
from tests.support.service import ServiceProcess


def token(api: httpx.Client, tenant: Tenant, connection_id: str, **params: str) -> httpx.Response:
    return api.post(
        f"/{connection_id}/token", params={**tenant.org, **params}, headers=tenant.headers
    )


def test_a_current_token_is_handed_out_as_stored(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess
) -> None:
    connection_id = connect(api, tenant)
    access, refresh = stored_tokens(service, connection_id)
    response = token(api, tenant, connection_id)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {
        "access_token",
        "token_type",
        "expires_at",
        "scopes",
        "connection_id",
        "app_key",
        "provider_metadata",
        "auth_mode",
        "credentials",
    }
    assert body["auth_mode"] == "oauth2" and body["credentials"] is None
    assert body["access_token"] == access and body["connection_id"] == connection_id
    assert body["token_type"] == "Bearer" and body["app_key"] == "local-oidc"
    assert refresh not in response.text
    assert event_types(service, connection_id) == ["connection.created"]


def test_a_token_inside_the_margin_is_refreshed_first(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess, oidc: OidcProvider
) -> None:
    connection_id = connect(api, tenant)
    old_access, old_refresh = stored_tokens(service, connection_id)
    set_expiry(service, connection_id, 30)  # inside the default 300 s margin
    response = token(api, tenant, connection_id)
    assert response.status_code == 200, response.text
    new_access, new_refresh = stored_tokens(service, connection_id)
    assert response.json()["access_token"] == new_access != old_access
    assert new_refresh != old_refresh  # the provider rotated it and we persisted the new one
    assert connection_row(service, connection_id).version == 2
    assert event_types(service, connection_id)[-1] == "connection.refreshed"
    # The next call is served from storage: no second refresh.
    assert token(api, tenant, connection_id).json()["access_token"] == new_access
    assert event_types(service, connection_id).count("connection.refreshed") == 1
    # The persisted refresh token is the live one at the provider.
    live = token_request(
        oidc,
        CLIENT_ID,
        CLIENT_SECRET,
        {"grant_type": "refresh_token", "refresh_token": new_refresh},
    )
    assert live.status_code == 200


def test_force_refresh(api: httpx.Client, tenant: Tenant, service: ServiceProcess) -> None:
    connection_id = connect(api, tenant)
    old_access, _ = stored_tokens(service, connection_id)
    forced = token(api, tenant, connection_id, force_refresh="true")
    assert forced.status_code == 200 and forced.json()["access_token"] != old_access


def test_a_rejected_refresh_token_means_reauthorization(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess, oidc: OidcProvider
) -> None:
    connection_id = connect(api, tenant)
    _, refresh = stored_tokens(service, connection_id)
    revoked = web.post(
        oidc.metadata["revocation_endpoint"],
        auth=(CLIENT_ID, CLIENT_SECRET),
        data={"token": refresh},
    )
    assert revoked.status_code == 200
    set_expiry(service, connection_id, 10)
    response = token(api, tenant, connection_id)
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "REAUTHORIZATION_REQUIRED"
    assert refresh not in response.text
    [listed] = api.get("", params=tenant.org, headers=tenant.headers).json()
    assert listed["status"] == "needs_reauth"
    assert event_types(service, connection_id)[-1] == "connection.refresh_failed"
    again = token(api, tenant, connection_id)
    assert again.status_code == 409
    assert (
        event_types(service, connection_id).count("connection.refresh_failed") == 1
    )  # no second call
    # Connecting the account again heals it.
    assert connect(api, tenant) == connection_id
    assert token(api, tenant, connection_id).status_code == 200


def test_a_disabled_connection_hands_out_nothing(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess
) -> None:
    connection_id = connect(api, tenant)
    update_connection(service, connection_id, is_active=False)
    response = token(api, tenant, connection_id)
    assert response.status_code == 409 and response.json()["error"]["code"] == "CONNECTION_DISABLED"
    assert stored_tokens(service, connection_id)[0] is not None  # kept, just not handed out


def test_foreign_and_unknown_connections_are_not_found(
    api: httpx.Client, tenant: Tenant, other_tenant: Tenant
) -> None:
    connection_id = connect(api, tenant)
    assert token(api, other_tenant, connection_id).status_code == 404
    assert token(api, tenant, "conn_" + "0" * 32).status_code == 404


def test_routing_tries_the_token_route_before_any_other() -> None:
    """The hot path's route is the first of the service's routes the router tries (after only
    FastAPI's own documentation routes and the token exchange, whose ``/oauth/token`` its
    ``/{connection_id}/token`` would otherwise take), and it is documented."""
    app = create_app(Settings(data_dir=Path(tempfile.mkdtemp())))
    path = f"{API_PREFIX}/{{connection_id}}/token"
    paths = [getattr(route, "path", None) for route in app.router.routes]

    def documentation(each: str | None) -> bool:
        return each in ("/openapi.json", f"{API_PREFIX}/oauth/token") or (each or "").startswith(
            "/docs"
        )

    assert next(each for each in paths if not documentation(each)) == path
    assert paths.index(path) < paths.index("/docs")  # not behind the rarely asked /docs routes
    assert {"/openapi.json", "/docs"} <= set(paths)
    assert "post" in app.openapi()["paths"][path]
