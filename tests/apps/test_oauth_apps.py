"""Organization OAuth apps: admins set them, an organization's app wins, secrets never leave."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import httpx
from sqlalchemy import select

from personal_connectors.models import OAuthApp, Role
from tests.conftest import CLIENT_ID, PROVIDER_KEY, Tenant, make_tenant
from tests.support.service import ServiceProcess


def test_an_admin_sets_lists_and_removes_the_org_app(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess
) -> None:
    secret = "org-secret-1234567890"
    put = api.put(
        f"/apps/{PROVIDER_KEY}",
        params=tenant.org,
        headers=tenant.headers,
        json={"client_id": "org-client", "client_secret": secret, "scopes": ["openid", "email"]},
    )
    assert put.status_code == 200, put.text
    assert put.json()["source"] == "organization"
    assert put.json()["redirect_uri"] == f"{service.base_url}/v1/personal-connectors/callback"
    assert secret not in put.text

    listed = api.get("/apps", params=tenant.org, headers=tenant.headers)
    assert listed.status_code == 200 and secret not in listed.text
    [app] = [item for item in listed.json()["data"] if item["app_key"] == PROVIDER_KEY]
    assert app["client_id"] == "org-client" and app["scopes"] == ["openid", "email"]

    # The organization's app now drives its flows.
    started = api.post(
        "/authorize",
        params=tenant.org,
        headers=tenant.headers,
        json={"connector_type": PROVIDER_KEY},
    )
    query = parse_qs(urlsplit(started.json()["authorization_url"]).query)
    assert query["client_id"] == ["org-client"] and query["scope"] == ["openid email"]

    async def stored(session, runtime):  # type: ignore[no-untyped-def]
        row = (
            await session.execute(
                select(OAuthApp).where(OAuthApp.organization_id == tenant.organization_id)
            )
        ).scalar_one()
        return row.client_secret_ct

    assert secret.encode() not in service.run_db(stored)

    assert (
        api.delete(f"/apps/{PROVIDER_KEY}", params=tenant.org, headers=tenant.headers).status_code
        == 204
    )
    assert (
        api.delete(f"/apps/{PROVIDER_KEY}", params=tenant.org, headers=tenant.headers).status_code
        == 404
    )
    fallback = api.post(
        "/authorize",
        params=tenant.org,
        headers=tenant.headers,
        json={"connector_type": PROVIDER_KEY},
    )
    assert parse_qs(urlsplit(fallback.json()["authorization_url"]).query)["client_id"] == [
        CLIENT_ID
    ]


def test_members_cannot_manage_apps(api: httpx.Client, service: ServiceProcess) -> None:
    member = make_tenant(service, role=Role.MEMBER)
    response = api.put(
        f"/apps/{PROVIDER_KEY}",
        params=member.org,
        headers=member.headers,
        json={"client_id": "x", "client_secret": "y"},
    )
    assert (
        response.status_code == 403
        and response.json()["error"]["code"] == "INSUFFICIENT_PERMISSIONS"
    )
    assert api.get("/apps", params=member.org, headers=member.headers).status_code == 403


def test_a_provider_without_any_app_is_not_configured(api: httpx.Client, tenant: Tenant) -> None:
    response = api.post(
        "/authorize", params=tenant.org, headers=tenant.headers, json={"connector_type": "github"}
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "CONNECTOR_NOT_CONFIGURED"
    unknown = api.put(
        "/apps/not-a-provider",
        params=tenant.org,
        headers=tenant.headers,
        json={"client_id": "x", "client_secret": "y"},
    )
    assert unknown.status_code == 400 and unknown.json()["error"]["details"]["fields"] == [
        "app_key"
    ]
