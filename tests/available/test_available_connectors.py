"""The connector catalog as a caller sees it (SPEC §3.2 `/available`): every provider, whether
the organization can use it (`configured`) and whether the caller connected it."""

from __future__ import annotations

import httpx

from tests.conftest import CLIENT_ID, CLIENT_SECRET, FAULTY_KEY, PROVIDER_KEY, Tenant
from tests.flows.conftest import connect
from tests.support.service import ServiceProcess

CONNECTOR_FIELDS = {
    "id",
    "tool_key",
    "app_key",
    "display_name",
    "description",
    "category",
    "icon_url",
    "auth_mode",
    "configured",
    "is_connected",
    "connection_id",
    "release_channel",
    "credentials",  # the fields of a credentials connector (SPEC §10); null for OAuth ones
}


def catalog(api: httpx.Client, tenant: Tenant) -> dict[str, dict[str, object]]:
    response = api.get("/available", params=tenant.org, headers=tenant.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"object", "data"} and body["object"] == "list"
    return {item["tool_key"]: item for item in body["data"]}


def one(api: httpx.Client, tenant: Tenant, tool_key: str) -> dict[str, object]:
    response = api.get(f"/available/{tool_key}", params=tenant.org, headers=tenant.headers)
    assert response.status_code == 200, response.text
    return dict(response.json())


def catalog_keys(service: ServiceProcess) -> list[str]:
    async def work(session, runtime):  # type: ignore[no-untyped-def]
        return [entry.key for entry in runtime.catalog]

    return service.run_db(work)


def test_every_catalog_entry_is_listed_in_key_order(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess
) -> None:
    response = api.get("/available", params=tenant.org, headers=tenant.headers)
    data = response.json()["data"]
    keys = catalog_keys(service)
    assert [item["tool_key"] for item in data] == keys and len(keys) > 50
    assert all(set(item) == CONNECTOR_FIELDS for item in data)
    assert one(api, tenant, PROVIDER_KEY) == {
        "id": "pcon_local-oidc",
        "tool_key": "local-oidc",
        "app_key": "local-oidc",
        "display_name": "Local OIDC",
        "description": None,
        "category": "identity",
        "icon_url": None,
        "auth_mode": "oauth2",
        "configured": True,  # the service-wide app of the test set-up
        "is_connected": False,
        "connection_id": None,
        "release_channel": "stable",
        "credentials": None,
    }
    github = one(api, tenant, "github")
    assert github == catalog(api, tenant)["github"]
    assert github["display_name"] == "GitHub" and github["configured"] is False
    assert github["category"] and github["description"]
    assert one(api, tenant, "salesforce_sandbox")["release_channel"] == "beta"


def test_is_connected_follows_the_callers_newest_live_connection(
    api: httpx.Client, tenant: Tenant, other_tenant: Tenant
) -> None:
    first = connect(api, tenant, login="alice")
    after_first = one(api, tenant, PROVIDER_KEY)
    assert (after_first["is_connected"], after_first["connection_id"]) == (True, first)

    second = connect(api, tenant, login="bob")
    listed = catalog(api, tenant)
    assert (listed[PROVIDER_KEY]["is_connected"], listed[PROVIDER_KEY]["connection_id"]) == (
        True,
        second,
    )
    assert listed[FAULTY_KEY]["is_connected"] is False
    assert listed[FAULTY_KEY]["connection_id"] is None

    # A disabled connection is still connected: it comes back without a new authorization.
    api.patch(
        f"/connections/{second}/active",
        params=tenant.org,
        headers=tenant.headers,
        json={"is_active": False},
    )
    assert one(api, tenant, PROVIDER_KEY)["connection_id"] == second

    theirs = one(api, other_tenant, PROVIDER_KEY)
    assert (theirs["is_connected"], theirs["connection_id"]) == (False, None)

    assert api.delete(f"/{second}", headers=tenant.headers).status_code == 204
    assert one(api, tenant, PROVIDER_KEY)["connection_id"] == first
    assert api.delete(f"/{first}", headers=tenant.headers).status_code == 204
    gone = one(api, tenant, PROVIDER_KEY)
    assert (gone["is_connected"], gone["connection_id"]) == (False, None)


def test_configured_follows_the_organizations_own_app(
    api: httpx.Client, tenant: Tenant, other_tenant: Tenant
) -> None:
    assert one(api, tenant, "gitlab")["configured"] is False
    response = api.put(
        "/apps/gitlab",
        params=tenant.org,
        headers=tenant.headers,
        json={"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET},
    )
    assert response.status_code == 200, response.text
    assert one(api, tenant, "gitlab")["configured"] is True
    assert catalog(api, tenant)["gitlab"]["configured"] is True
    assert one(api, other_tenant, "gitlab")["configured"] is False

    assert api.delete("/apps/gitlab", params=tenant.org, headers=tenant.headers).status_code == 204
    assert one(api, tenant, "gitlab")["configured"] is False


def test_unknown_or_malformed_tool_keys_and_access(
    api: httpx.Client, tenant: Tenant, other_tenant: Tenant
) -> None:
    unknown = api.get("/available/no-such-tool", params=tenant.org, headers=tenant.headers)
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "RESOURCE_NOT_FOUND"
    malformed = api.get("/available/Not%20A%20Key", params=tenant.org, headers=tenant.headers)
    assert malformed.status_code == 400
    assert malformed.json()["error"]["details"]["fields"] == ["tool_key"]
    for path in ("/available", f"/available/{PROVIDER_KEY}"):
        assert api.get(path, params=tenant.org).status_code == 401
        missing = api.get(path, headers=tenant.headers)
        assert missing.status_code == 400
        assert missing.json()["error"]["details"]["fields"] == ["organization_id"]
        denied = api.get(path, params=other_tenant.org, headers=tenant.headers)
        assert denied.json()["error"]["code"] == "ORGANIZATION_ACCESS_DENIED"
