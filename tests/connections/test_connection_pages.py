"""The documented connection pages (SPEC §3.2): one connector's accounts, the active toggle,
tool configuration, and the 404 every path answers for a connection that is not the caller's."""

from __future__ import annotations

from datetime import datetime

import httpx

from personal_connectors.identity.service import IdentityService
from personal_connectors.models import Role
from tests.conftest import PROVIDER_KEY, Tenant
from tests.flows.conftest import connect
from tests.support.db import connection_row, event_types, stored_tokens
from tests.support.service import ServiceProcess

# Every path of SPEC §3.2 that names a connection, with a valid body where it takes one.
CONNECTION_PATHS = [
    ("PATCH", "/connections/{id}/active", {"is_active": False}),
    ("GET", "/{id}/health", None),
    ("POST", "/{id}/test", None),
    ("PATCH", "/{id}/tools", {"enabled": False, "allowed_tools": ["x"]}),
]


def colleague_of(service: ServiceProcess, tenant: Tenant) -> Tenant:
    """Another member of the same organization, with a key of their own."""

    async def work(session, runtime):  # type: ignore[no-untyped-def]
        identities = IdentityService(session)
        user = await identities.create_user(
            f"colleague-{tenant.user_id[-8:]}@example.test", tenant.organization_id, role=Role.ADMIN
        )
        issued = await identities.create_api_key(user.id)
        return Tenant(tenant.organization_id, user.id, issued.plaintext, issued.key.id)

    return service.run_db(work)


def call(
    api: httpx.Client, tenant: Tenant, method: str, path: str, body: object = None
) -> httpx.Response:
    return api.request(method, path, params=tenant.org, headers=tenant.headers, json=body)


def assert_not_found(response: httpx.Response) -> None:
    assert response.status_code == 404, response.text
    assert response.json()["error"]["code"] == "RESOURCE_NOT_FOUND"


def test_one_connectors_accounts_active_and_disabled_alike(
    api: httpx.Client, tenant: Tenant, other_tenant: Tenant
) -> None:
    alice = connect(api, tenant, login="alice")
    bob = connect(api, tenant, login="bob")
    connect(api, other_tenant, login="carol")
    assert (
        call(api, tenant, "PATCH", f"/connections/{alice}/active", {"is_active": False}).json()[
            "is_active"
        ]
        is False
    )

    response = call(api, tenant, "GET", f"/connections/{PROVIDER_KEY}")
    assert response.status_code == 200
    body = response.json()
    assert body["tool_key"] == PROVIDER_KEY
    assert [item["id"] for item in body["connections"]] == [bob, alice]  # newest first
    second = body["connections"][1]
    assert set(second) == {
        "id",
        "tool_key",
        "display_name",
        "credential_name",
        "account_email",
        "connection_id",
        "is_active",
        "created_at",
    }
    assert second["tool_key"] == PROVIDER_KEY
    assert second["display_name"] == "alice@example.test - Local OIDC"
    assert second["credential_name"] is None
    assert second["account_email"] == "alice@example.test"
    assert second["connection_id"] == alice
    assert second["is_active"] is False and body["connections"][0]["is_active"] is True
    assert datetime.fromisoformat(second["created_at"]).tzinfo is not None

    empty = call(api, tenant, "GET", "/connections/github")
    assert empty.status_code == 200 and empty.json() == {"tool_key": "github", "connections": []}
    assert_not_found(call(api, tenant, "GET", "/connections/no-such-tool"))


def test_disabling_and_enabling_keeps_the_tokens_and_records_both(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess
) -> None:
    connection_id = connect(api, tenant)
    tokens = stored_tokens(service, connection_id)
    assert all(tokens)

    off = call(api, tenant, "PATCH", f"/connections/{connection_id}/active", {"is_active": False})
    assert off.status_code == 200 and off.json() == {"id": connection_id, "is_active": False}
    again = call(api, tenant, "PATCH", f"/connections/{connection_id}/active", {"is_active": False})
    assert again.json() == {"id": connection_id, "is_active": False}  # idempotent, no new event
    [listed] = call(api, tenant, "GET", "").json()
    assert listed["is_active"] is False and listed["status"] == "active"
    assert stored_tokens(service, connection_id) == tokens

    on = call(api, tenant, "PATCH", f"/connections/{connection_id}/active", {"is_active": True})
    assert on.json() == {"id": connection_id, "is_active": True}
    assert call(api, tenant, "GET", f"/{connection_id}").json()["is_active"] is True
    assert stored_tokens(service, connection_id) == tokens
    assert event_types(service, connection_id) == [
        "connection.created",
        "connection.disabled",
        "connection.enabled",
    ]


def assert_refused(response: httpx.Response, field: str) -> None:
    """400 in the envelope (never FastAPI's 422), naming the one offending field."""
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "VALIDATION_ERROR" and error["details"]["fields"] == [field]


def send_raw(api: httpx.Client, tenant: Tenant, path: str, content: bytes) -> httpx.Response:
    headers = {**tenant.headers, "Content-Type": "application/json"}
    return api.patch(path, params=tenant.org, headers=headers, content=content)


def test_the_toggle_body_is_validated(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess
) -> None:
    connection_id = connect(api, tenant)
    path = f"/connections/{connection_id}/active"
    for body, field in [
        ({}, "is_active"),
        ({"is_active": "false"}, "is_active"),  # strict: a string is not a boolean
        ({"is_active": 0}, "is_active"),
        ({"is_active": None}, "is_active"),
        ({"is_active": True, "active": False}, "active"),
    ]:
        assert_refused(call(api, tenant, "PATCH", path, body), field)
    assert_refused(send_raw(api, tenant, path, b'{"is_active": fals'), "body")
    assert connection_row(service, connection_id).is_active is True
    assert event_types(service, connection_id) == ["connection.created"]


def test_tool_configuration_round_trips(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess
) -> None:
    connection_id = connect(api, tenant)
    row = connection_row(service, connection_id)
    assert (row.tools_enabled, row.allowed_tools) == (True, None)

    chosen = call(
        api,
        tenant,
        "PATCH",
        f"/{connection_id}/tools",
        {"enabled": False, "allowed_tools": ["oidc_read", "oidc_search", "oidc_read"]},
    )
    assert chosen.status_code == 200, chosen.text
    assert chosen.json() == {
        "success": True,
        "message": chosen.json()["message"],
        "data": {
            "connection_id": connection_id,
            "enabled": False,
            "allowed_tools": ["oidc_read", "oidc_search"],
        },
    }
    assert chosen.json()["message"]
    row = connection_row(service, connection_id)
    assert (row.tools_enabled, row.allowed_tools) == (False, ["oidc_read", "oidc_search"])

    reset = call(api, tenant, "PATCH", f"/{connection_id}/tools", {"enabled": True})
    assert reset.json()["data"] == {
        "connection_id": connection_id,
        "enabled": True,
        "allowed_tools": None,
    }
    row = connection_row(service, connection_id)
    assert (row.tools_enabled, row.allowed_tools) == (True, None)


def test_the_tools_body_is_validated(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess
) -> None:
    connection_id = connect(api, tenant)
    path = f"/{connection_id}/tools"
    for body, field in [
        ({}, "enabled"),
        ({"allowed_tools": ["a"]}, "enabled"),  # `enabled` is required
        ({"enabled": "yes"}, "enabled"),
        ({"enabled": True, "allowed_tools": "a"}, "allowed_tools"),
        ({"enabled": True, "allowed_tools": [""]}, "allowed_tools.0"),
        ({"enabled": True, "allowed_tools": ["two words"]}, "allowed_tools.0"),
        ({"enabled": True, "allowed_tools": ["t"] * 501}, "allowed_tools"),
        ({"enabled": True, "tools": []}, "tools"),
    ]:
        assert_refused(call(api, tenant, "PATCH", path, body), field)
    assert_refused(send_raw(api, tenant, path, b'{"enabled": tru'), "body")
    row = connection_row(service, connection_id)
    assert (row.tools_enabled, row.allowed_tools) == (True, None)


def test_every_connection_path_is_404_for_what_is_not_the_callers(
    api: httpx.Client, tenant: Tenant, other_tenant: Tenant, service: ServiceProcess
) -> None:
    colleague = colleague_of(service, tenant)
    theirs = connect(api, colleague)  # same organization, another user
    foreign = connect(api, other_tenant)  # another organization
    deleted = connect(api, tenant)
    assert api.delete(f"/{deleted}", headers=tenant.headers).status_code == 204
    unknown = "conn_" + "0" * 32

    for method, template, body in CONNECTION_PATHS:
        for connection_id in (theirs, foreign, deleted, unknown):
            assert_not_found(call(api, tenant, method, template.format(id=connection_id), body))
        # Naming one's own organization does not reach another organization's connection.
        assert_not_found(call(api, other_tenant, method, template.format(id=theirs), body))

    for connection_id in (theirs, foreign):  # and nothing about them changed
        row = connection_row(service, connection_id)
        assert row.is_active is True and row.tools_enabled is True
        assert row.allowed_tools is None and row.last_checked_at is None
    assert event_types(service, theirs) == ["connection.created"]


def test_the_pages_need_a_key_and_an_organization(
    api: httpx.Client, tenant: Tenant, other_tenant: Tenant
) -> None:
    connection_id = connect(api, tenant)
    for method, template, body in CONNECTION_PATHS:
        path = template.format(id=connection_id)
        assert api.request(method, path, params=tenant.org, json=body).status_code == 401
        missing = api.request(method, path, headers=tenant.headers, json=body)
        assert missing.status_code == 400
        assert missing.json()["error"]["details"]["fields"] == ["organization_id"]
        denied = api.request(
            method, path, params=other_tenant.org, headers=tenant.headers, json=body
        )
        assert denied.status_code == 403
        assert denied.json()["error"]["code"] == "ORGANIZATION_ACCESS_DENIED"
