"""``/end-users`` (SPEC §8): created or described by PUT, read, listed a page at a time with a
``Link`` header, for a service key or an owner's or admin's key only."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from personal_connectors.models import Role
from tests.conftest import Tenant
from tests.support.platform import OrganizationKey, make_member, make_organization_key
from tests.support.service import ServiceProcess


def error_code(response: httpx.Response) -> str:
    return str(response.json()["error"]["code"])


@pytest.fixture
def service_key(service: ServiceProcess, tenant: Tenant) -> OrganizationKey:
    return make_organization_key(service, tenant.organization_id)


def test_put_creates_then_updates_only_the_fields_it_names(
    api: httpx.Client, service_key: OrganizationKey
) -> None:
    path, auth = "/end-users/user-7", {"params": service_key.org, "headers": service_key.headers}
    created = api.put(
        path,
        json={"email": "u7@example.test", "display_name": "User Seven", "tags": {"plan": "pro"}},
        **auth,
    )
    assert created.status_code == 200, created.text
    body = created.json()
    assert set(body) == {
        "id", "email", "display_name", "tags", "connection_count", "created_at", "updated_at",
    }  # fmt: skip
    assert body["id"] == "user-7" and body["email"] == "u7@example.test"
    assert body["display_name"] == "User Seven" and body["tags"] == {"plan": "pro"}
    assert body["connection_count"] == 0

    changed = api.put(path, json={"display_name": "Seven"}, **auth).json()
    assert changed["display_name"] == "Seven"
    assert changed["email"] == "u7@example.test" and changed["tags"] == {"plan": "pro"}
    assert changed["created_at"] == body["created_at"]
    cleared = api.put(path, json={"email": None, "tags": {}}, **auth).json()
    assert cleared["email"] is None and cleared["tags"] == {} and cleared["display_name"] == "Seven"
    assert api.get(path, **auth).json() == cleared
    # No body at all: the end user exists, nothing changes.
    assert api.put(path, **auth).json() == cleared


@pytest.mark.parametrize(
    "body",
    [
        {"tags": {f"k{n}": "v" for n in range(21)}},
        {"tags": {"k" * 65: "v"}},
        {"tags": {"k": "v" * 257}},
        {"tags": {"k": 1}},
        {"tags": {"has space": "v"}},  # the same key rule as connection tags
        {"email": "not-an-address"},
        {"nickname": "x"},
    ],
)
def test_a_bad_end_user_body_is_refused_and_changes_nothing(
    api: httpx.Client, service_key: OrganizationKey, body: dict[str, object]
) -> None:
    response = api.put(
        "/end-users/user-8", params=service_key.org, headers=service_key.headers, json=body
    )
    assert response.status_code == 400 and error_code(response) == "VALIDATION_ERROR"
    assert api.get("/end-users", params=service_key.org, headers=service_key.headers).json() == []


def test_the_list_pages_through_a_link_header(
    api: httpx.Client, service_key: OrganizationKey
) -> None:
    auth = {"params": service_key.org, "headers": service_key.headers}
    for end_user_id in ("c", "a", "e", "b", "d"):
        assert api.put(f"/end-users/{end_user_id}", json={}, **auth).status_code == 200

    seen: list[str] = []
    params: dict[str, str] = {**service_key.org, "limit": "2"}
    pages = 0
    while True:
        page = api.get("/end-users", params=params, headers=service_key.headers)
        assert page.status_code == 200
        pages += 1
        seen += [item["id"] for item in page.json()]
        link = page.headers.get("link")
        if link is None:
            break
        url, rel = link.split(";")
        assert rel.strip() == 'rel="next"'
        query = parse_qs(urlsplit(url.strip("<> ")).query)
        params = {name: values[0] for name, values in query.items()}
    assert sorted(seen) == ["a", "b", "c", "d", "e"] and pages == 3

    # One page of them all, newest first (as the connection list pages): the same order.
    everything = api.get("/end-users", **auth)
    assert [item["id"] for item in everything.json()] == seen and "link" not in everything.headers
    assert seen[0] == "d" and seen[-1] == "c"
    for limit in ("0", "1001", "x"):
        bad = api.get(
            "/end-users", params={**service_key.org, "limit": limit}, headers=service_key.headers
        )
        assert bad.status_code == 400 and error_code(bad) == "VALIDATION_ERROR"
    forged = api.get(
        "/end-users",
        params={**service_key.org, "after": "not-a-cursor"},
        headers=service_key.headers,
    )
    assert forged.status_code == 400 and forged.json()["error"]["details"]["fields"] == ["after"]


def test_only_a_service_key_or_an_admin_manages_end_users(
    api: httpx.Client,
    service: ServiceProcess,
    tenant: Tenant,
    other_tenant: Tenant,
    service_key: OrganizationKey,
) -> None:
    admin = make_member(service, tenant.organization_id, Role.ADMIN)
    member = make_member(service, tenant.organization_id, Role.MEMBER)
    made = api.put("/end-users/by-admin", params=admin.org, headers=admin.headers, json={})
    assert made.status_code == 200
    # The service key sees what the admin made: end users belong to the organization.
    seen = api.get("/end-users/by-admin", params=service_key.org, headers=service_key.headers)
    assert seen.status_code == 200

    for method, path in (
        ("GET", "/end-users"),
        ("GET", "/end-users/by-admin"),
        ("PUT", "/end-users/by-member"),
        ("DELETE", "/end-users/by-admin"),
    ):
        refused = api.request(method, path, params=member.org, headers=member.headers, json={})
        assert refused.status_code == 403 and error_code(refused) == "INSUFFICIENT_PERMISSIONS"
        foreign = api.request(
            method, path, params=other_tenant.org, headers=service_key.headers, json={}
        )
        assert foreign.status_code == 403 and error_code(foreign) == "ORGANIZATION_ACCESS_DENIED"
        # Another organization's admin does not find them.
        other = api.request(
            method, path, params=other_tenant.org, headers=other_tenant.headers, json={}
        )
        if method == "GET" and path == "/end-users":
            assert other.json() == []
        elif method != "PUT":
            assert other.status_code == 404


def test_an_unknown_end_user_is_not_found(api: httpx.Client, service_key: OrganizationKey) -> None:
    for method in ("GET", "DELETE"):
        response = api.request(
            method, "/end-users/nobody", params=service_key.org, headers=service_key.headers
        )
        assert response.status_code == 404 and error_code(response) == "RESOURCE_NOT_FOUND"
