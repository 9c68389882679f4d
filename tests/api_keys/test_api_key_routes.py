"""``/api-keys`` (SPEC §8): who may create which kind of key, a list that never shows a secret,
and a deleted key refused at once; service keys kept off the admin routes, exchange keys off
every route."""

from __future__ import annotations

import time

import httpx
import pytest

from personal_connectors.models import KeyKind
from tests.conftest import Tenant
from tests.support import outputs
from tests.support.platform import make_member, make_organization_key
from tests.support.service import ServiceProcess


def error_code(response: httpx.Response) -> str:
    return str(response.json()["error"]["code"])


def create_key(api: httpx.Client, caller: Tenant, **body: object) -> httpx.Response:
    response = api.post("/api-keys", params=caller.org, headers=caller.headers, json=body)
    if response.status_code == 201:
        outputs.RECORD.add_secret(response.json()["key"], "api_key")
    return response


def test_an_owner_creates_a_service_key_shown_once_and_listed_without_its_secret(
    api: httpx.Client, tenant: Tenant
) -> None:
    created = create_key(api, tenant, kind="service", name="backend", expires_in_days=30)
    assert created.status_code == 201, created.text
    body = created.json()
    assert set(body) == {"id", "key", "kind", "name", "created_at", "expires_at"}
    assert body["kind"] == "service" and body["name"] == "backend"
    assert body["id"].startswith("key_") and body["expires_at"] is not None
    key = body["key"]
    assert key.startswith("ak_") and len(key) == 43

    # The new key works at once, as a service key (the organization-wide list needs no end user).
    assert api.get("", params=tenant.org, headers={"X-API-Key": key}).json() == []

    listed = api.get("/api-keys", params=tenant.org, headers=tenant.headers)
    assert listed.status_code == 200
    assert key not in listed.text and key[8:] not in listed.text
    by_id = {item["id"]: item for item in listed.json()}
    assert set(by_id) == {body["id"], tenant.api_key_id}
    service_key = by_id[body["id"]]
    assert set(service_key) == {
        "id", "kind", "name", "prefix", "user_id", "status", "created_at", "expires_at",
        "last_used_at",
    }  # fmt: skip
    assert service_key["kind"] == "service" and service_key["user_id"] is None
    assert service_key["prefix"] == key[:8] and service_key["status"] == "active"
    own = by_id[tenant.api_key_id]
    assert own["kind"] == "user" and own["user_id"] == tenant.user_id


def test_a_member_creates_only_user_keys_for_themself_and_sees_only_their_own(
    api: httpx.Client, service: ServiceProcess, tenant: Tenant
) -> None:
    member = make_member(service, tenant.organization_id)
    for kind in ("service", "exchange"):
        refused = create_key(api, member, kind=kind)
        assert refused.status_code == 403 and error_code(refused) == "INSUFFICIENT_PERMISSIONS"
    mine = create_key(api, member, kind="user", name="laptop")
    assert mine.status_code == 201 and mine.json()["kind"] == "user"
    # The new user key acts as the member.
    assert api.get("", params=member.org, headers={"X-API-Key": mine.json()["key"]}).json() == []

    org_key = make_organization_key(service, tenant.organization_id)
    listed = api.get("/api-keys", params=member.org, headers=member.headers).json()
    assert {item["id"] for item in listed} == {member.api_key_id, mine.json()["id"]}
    assert org_key.api_key_id not in str(listed)


def test_a_deleted_key_is_refused_at_once_and_only_its_owner_or_an_admin_deletes_it(
    api: httpx.Client, service: ServiceProcess, tenant: Tenant, other_tenant: Tenant
) -> None:
    member = make_member(service, tenant.organization_id)
    org_key = create_key(api, tenant, kind="service").json()
    service_headers = {"X-API-Key": org_key["key"]}
    assert api.get("", params=tenant.org, headers=service_headers).status_code == 200

    # A member may not delete the organization's key; another organization's owner finds none.
    refused = api.delete(f"/api-keys/{org_key['id']}", params=member.org, headers=member.headers)
    assert refused.status_code == 403 and error_code(refused) == "INSUFFICIENT_PERMISSIONS"
    foreign = api.delete(
        f"/api-keys/{org_key['id']}", params=other_tenant.org, headers=other_tenant.headers
    )
    assert foreign.status_code == 404 and error_code(foreign) == "RESOURCE_NOT_FOUND"
    # Nor does anyone reach another user's own key.
    theirs = api.delete(f"/api-keys/{member.api_key_id}", params=tenant.org, headers=tenant.headers)
    assert theirs.status_code == 404

    deleted = api.delete(f"/api-keys/{org_key['id']}", params=tenant.org, headers=tenant.headers)
    assert deleted.status_code == 204 and deleted.content == b""
    gone = api.get("", params=tenant.org, headers=service_headers)
    assert gone.status_code == 401 and error_code(gone) == "INVALID_API_KEY"
    again = api.delete(f"/api-keys/{org_key['id']}", params=tenant.org, headers=tenant.headers)
    assert again.status_code == 404

    # Anyone deletes their own key, the one they call with included.
    own = api.delete(f"/api-keys/{member.api_key_id}", params=member.org, headers=member.headers)
    assert own.status_code == 204
    after = api.get("", params=member.org, headers=member.headers)
    assert after.status_code == 401 and error_code(after) == "INVALID_API_KEY"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"kind": "robot"}, "kind"),
        ({}, "kind"),
        ({"kind": "service", "expires_in_days": 0}, "expires_in_days"),
        ({"kind": "service", "name": ""}, "name"),
        ({"kind": "service", "secret": "x"}, "secret"),
    ],
)
def test_a_bad_key_request_is_refused_and_creates_nothing(
    api: httpx.Client, tenant: Tenant, body: dict[str, object], field: str
) -> None:
    response = create_key(api, tenant, **body)
    assert response.status_code == 400 and error_code(response) == "VALIDATION_ERROR"
    assert field in str(response.json()["error"]["details"])
    listed = api.get("/api-keys", params=tenant.org, headers=tenant.headers).json()
    assert [item["id"] for item in listed] == [tenant.api_key_id]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/apps", None),
        ("PUT", "/apps/local-oidc", {"client_id": "a", "client_secret": "b"}),
        ("GET", "/webhooks", None),
        ("GET", "/organization", None),
        ("GET", "/api-keys", None),
        ("POST", "/api-keys", {"kind": "service"}),
    ],
)
def test_a_service_key_is_refused_on_admin_routes(
    api: httpx.Client,
    service: ServiceProcess,
    tenant: Tenant,
    other_tenant: Tenant,
    method: str,
    path: str,
    body: dict[str, object] | None,
) -> None:
    key = make_organization_key(service, tenant.organization_id)
    own = api.request(method, path, params=tenant.org, headers=key.headers, json=body)
    assert own.status_code == 403 and error_code(own) == "INSUFFICIENT_PERMISSIONS"
    assert "service key" in own.json()["error"]["system_message"]
    other = api.request(method, path, params=other_tenant.org, headers=key.headers, json=body)
    assert other.status_code == 403 and error_code(other) == "ORGANIZATION_ACCESS_DENIED"


def test_a_service_key_acts_only_in_its_organization(
    api: httpx.Client, service: ServiceProcess, tenant: Tenant, other_tenant: Tenant
) -> None:
    key = make_organization_key(service, tenant.organization_id)
    for path in ("", "/available"):
        params = {**other_tenant.org, "end_user_id": "u1"}
        response = api.get(path, params=params, headers=key.headers)
        assert response.status_code == 403, (path, response.text)
        assert error_code(response) == "ORGANIZATION_ACCESS_DENIED"
    token = api.post(
        "/conn_00000000000000000000000000000000/token",
        params={**other_tenant.org, "end_user_id": "u1"},
        headers=key.headers,
    )
    assert token.status_code == 403 and error_code(token) == "ORGANIZATION_ACCESS_DENIED"


def test_an_exchange_key_is_refused_everywhere_but_the_token_exchange(
    api: httpx.Client, service: ServiceProcess, tenant: Tenant
) -> None:
    key = make_organization_key(service, tenant.organization_id, KeyKind.EXCHANGE)
    params = {**tenant.org, "end_user_id": "u1"}
    for method, path in (
        ("GET", ""),
        ("GET", "/available"),
        ("POST", "/conn_00000000000000000000000000000000/token"),
        ("GET", "/end-users"),
        ("GET", "/apps"),
    ):
        response = api.request(method, path, params=params, headers=key.headers)
        assert response.status_code == 403, (path, response.text)
        assert error_code(response) == "INSUFFICIENT_PERMISSIONS"
        assert "/oauth/token" in response.json()["error"]["system_message"]


def last_used(api: httpx.Client, caller: Tenant) -> dict[str, str | None]:
    listed = api.get("/api-keys", params=caller.org, headers=caller.headers)
    assert listed.status_code == 200, listed.text
    return {item["id"]: item["last_used_at"] for item in listed.json()}


def stamped(api: httpx.Client, caller: Tenant, key_id: str) -> str:
    """The key's ``last_used_at`` once the service has written it (off the request path)."""
    deadline = time.monotonic() + 20
    while (stamp := last_used(api, caller)[key_id]) is None:
        assert time.monotonic() < deadline, f"{key_id} was never stamped as used"
        time.sleep(0.05)
    return stamp


def test_last_used_at_is_stamped_on_use_at_most_once_a_minute_per_key(
    api: httpx.Client, tenant: Tenant
) -> None:
    """Every way a key authenticates stamps it (a route, the token route's own lookup, the
    token exchange), without a write per request: a key used again within the minute keeps
    the stamp its first use wrote."""
    keys = {
        name: create_key(api, tenant, kind=kind).json()
        for name, kind in (
            ("routes", "service"),
            ("token", "service"),
            ("exchange", "exchange"),
            ("witness", "service"),
        )
    }
    before = last_used(api, tenant)
    assert [before[key["id"]] for key in keys.values()] == [None] * 4  # created, never used

    def use(name: str) -> httpx.Response:
        return api.get("", params=tenant.org, headers={"X-API-Key": keys[name]["key"]})

    assert use("routes").status_code == 200
    first = stamped(api, tenant, keys["routes"]["id"])
    # The token route authenticates in its own single query (the key answers 404 for no
    # such connection, after authenticating); the exchange refuses the grant after its client.
    answer = api.post(
        f"/conn_{'0' * 32}/token",
        params={**tenant.org, "end_user_id": "someone"},
        headers={"X-API-Key": keys["token"]["key"]},
    )
    assert answer.status_code == 404, answer.text
    exchanged = api.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        headers={"X-API-Key": keys["exchange"]["key"]},
    )
    assert exchanged.json()["error"] == "unsupported_grant_type"
    stamped(api, tenant, keys["token"]["id"])
    stamped(api, tenant, keys["exchange"]["id"])

    for _ in range(5):
        assert use("routes").status_code == 200
    # Stamps are written in the order uses are noted: once the witness's (noted after those
    # five) is written, any stamp they caused would be too.
    assert use("witness").status_code == 200
    stamped(api, tenant, keys["witness"]["id"])
    assert last_used(api, tenant)[keys["routes"]["id"]] == first
