"""A service key acting for end users (SPEC §8): ``end_user_id`` required where the route acts
for "the caller", refused on a user key, and one end user never reaching another's
connections — on every route that reads or changes one, the token route included."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import Tenant
from tests.flows.conftest import connect
from tests.support.platform import EndUserCaller, OrganizationKey, make_organization_key
from tests.support.service import ServiceProcess


def error_code(response: httpx.Response) -> str:
    return str(response.json()["error"]["code"])


@pytest.fixture
def service_key(service: ServiceProcess, tenant: Tenant) -> OrganizationKey:
    return make_organization_key(service, tenant.organization_id)


def test_each_end_user_reaches_only_their_own_connections(
    api: httpx.Client, tenant: Tenant, service_key: OrganizationKey
) -> None:
    alice, bob = service_key.acting_for("alice@platform"), service_key.acting_for("bob|42")
    alices = connect(api, alice, login="alice")
    bobs = connect(api, bob, login="bob")
    owners = connect(api, tenant, login="carol")  # a member's personal connection

    for caller, own, foreign in ((alice, alices, bobs), (bob, bobs, alices)):
        listed = api.get("", params=caller.org, headers=caller.headers)
        assert [item["id"] for item in listed.json()] == [own]
        assert listed.json()[0]["end_user_id"] == caller.end_user_id
        assert api.get(f"/{own}", params=caller.org, headers=caller.headers).status_code == 200
        token = api.post(f"/{own}/token", params=caller.org, headers=caller.headers)
        assert token.status_code == 200 and token.json()["connection_id"] == own
        for path in (f"/{foreign}", f"/{owners}"):
            found = api.get(path, params=caller.org, headers=caller.headers)
            assert found.status_code == 404 and error_code(found) == "RESOURCE_NOT_FOUND"
        for connection in (foreign, owners):
            # The token route, on its shortcut (no other parameter) and on the declared route.
            for extra in ({}, {"force_refresh": "false"}):
                token = api.post(
                    f"/{connection}/token", params={**caller.org, **extra}, headers=caller.headers
                )
                assert token.status_code == 404 and error_code(token) == "RESOURCE_NOT_FOUND"
            deleted = api.delete(f"/{connection}", params=caller.org, headers=caller.headers)
            assert deleted.status_code == 404
            disabled = api.patch(
                f"/connections/{connection}/active",
                params=caller.org,
                headers=caller.headers,
                json={"is_active": False},
            )
            assert disabled.status_code == 404

    # The member still sees only their own; their list carries no end user.
    mine = api.get("", params=tenant.org, headers=tenant.headers).json()
    assert [(item["id"], item["end_user_id"]) for item in mine] == [(owners, None)]

    # The service key naming no end user lists every end user's connection, never the member's,
    # and filters by end user with end_user_id.
    everyone = api.get("", params=service_key.org, headers=service_key.headers).json()
    assert {(item["id"], item["end_user_id"]) for item in everyone} == {
        (alices, "alice@platform"),
        (bobs, "bob|42"),
    }

    # An end user's own delete works, and then the connection is gone for them too.
    assert api.delete(f"/{alices}", params=alice.org, headers=alice.headers).status_code == 204
    assert api.get("", params=alice.org, headers=alice.headers).json() == []


def test_another_service_key_of_the_organization_reaches_the_same_end_user(
    api: httpx.Client, service: ServiceProcess, tenant: Tenant, service_key: OrganizationKey
) -> None:
    first = connect(api, service_key.acting_for("dana"), login="dana")
    second_key = make_organization_key(service, tenant.organization_id).acting_for("dana")
    token = api.post(f"/{first}/token", params=second_key.org, headers=second_key.headers)
    assert token.status_code == 200 and token.json()["connection_id"] == first


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/conn_00000000000000000000000000000000"),
        ("POST", "/conn_00000000000000000000000000000000/token"),
        ("POST", "/authorize"),
        ("POST", "/connect-sessions"),
        ("GET", "/available"),
        ("GET", "/connections/local-oidc"),
    ],
)
def test_a_service_key_without_end_user_id_is_told_to_name_one(
    api: httpx.Client, service_key: OrganizationKey, method: str, path: str
) -> None:
    body = {"connector_type": "local-oidc"} if path == "/authorize" else {}
    response = api.request(
        method, path, params=service_key.org, headers=service_key.headers, json=body
    )
    assert response.status_code == 400 and error_code(response) == "VALIDATION_ERROR"
    assert response.json()["error"]["details"]["fields"] == ["end_user_id"]
    assert "end_user_id" in response.json()["error"]["system_message"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", ""),
        ("GET", "/conn_00000000000000000000000000000000"),
        ("POST", "/conn_00000000000000000000000000000000/token"),
        ("POST", "/authorize"),
        ("DELETE", "/conn_00000000000000000000000000000000"),
    ],
)
def test_a_user_key_naming_an_end_user_is_refused(
    api: httpx.Client, tenant: Tenant, method: str, path: str
) -> None:
    body = {"connector_type": "local-oidc"} if path == "/authorize" else None
    params = {**tenant.org, "end_user_id": "alice"}
    response = api.request(method, path, params=params, headers=tenant.headers, json=body)
    assert response.status_code == 403 and error_code(response) == "INSUFFICIENT_PERMISSIONS"


@pytest.mark.parametrize("end_user_id", ["", "...", "a b", "a/b", "é", "x" * 129])
def test_an_end_user_id_outside_the_allowed_form_is_refused(
    api: httpx.Client, service_key: OrganizationKey, end_user_id: str
) -> None:
    for method, path in (("GET", ""), ("POST", "/conn_00000000000000000000000000000000/token")):
        params = {**service_key.org, "end_user_id": end_user_id}
        response = api.request(method, path, params=params, headers=service_key.headers)
        assert response.status_code == 400, (path, response.text)
        assert error_code(response) == "VALIDATION_ERROR"
        assert response.json()["error"]["details"]["fields"] == ["end_user_id"]
    if end_user_id and "/" not in end_user_id:  # (a path segment the route can receive)
        put = api.put(
            f"/end-users/{end_user_id}",
            params=service_key.org,
            headers=service_key.headers,
            json={},
        )
        assert put.status_code == 400 and error_code(put) == "VALIDATION_ERROR"
    assert api.get("/end-users", params=service_key.org, headers=service_key.headers).json() == []


def test_a_read_finds_nothing_for_an_unknown_end_user_and_a_write_creates_it(
    api: httpx.Client, service_key: OrganizationKey
) -> None:
    caller = service_key.acting_for("new.user_1:a@b|c-d")
    assert api.get("", params=caller.org, headers=caller.headers).json() == []
    available = api.get("/available", params=caller.org, headers=caller.headers)
    assert available.status_code == 200
    token = api.post(
        "/conn_00000000000000000000000000000000/token", params=caller.org, headers=caller.headers
    )
    assert token.status_code == 404
    # None of those reads created the end user.
    assert api.get("/end-users", params=service_key.org, headers=service_key.headers).json() == []
    unknown = api.get(
        f"/end-users/{caller.end_user_id}", params=service_key.org, headers=service_key.headers
    )
    assert unknown.status_code == 404

    # Writes refused for their input create nothing either (SPEC §2: bad input changes nothing).
    refused = [
        api.post("/authorize", params=caller.org, headers=caller.headers, json={}),
        api.post(
            "/authorize", params=caller.org, headers=caller.headers, json={"connector_type": "nope"}
        ),
        api.post(
            "/connect-sessions",
            params=caller.org,
            headers=caller.headers,
            json={"allowed_connectors": ["nope"]},
        ),
    ]
    assert [response.status_code for response in refused] == [400, 400, 400]
    assert api.get("/end-users", params=service_key.org, headers=service_key.headers).json() == []

    started = api.post(
        "/authorize",
        params=caller.org,
        headers=caller.headers,
        json={"connector_type": "local-oidc"},
    )
    assert started.status_code == 200, started.text
    created = api.get(
        f"/end-users/{caller.end_user_id}", params=service_key.org, headers=service_key.headers
    )
    assert created.status_code == 200
    assert created.json()["id"] == caller.end_user_id and created.json()["connection_count"] == 0


def test_a_flow_started_for_an_end_user_is_completed_only_by_that_end_user(
    api: httpx.Client, service_key: OrganizationKey
) -> None:
    erin: EndUserCaller = service_key.acting_for("erin")
    frank = service_key.acting_for("frank")
    started = api.post(
        "/authorize", params=erin.org, headers=erin.headers, json={"connector_type": "local-oidc"}
    ).json()
    body = {"state_token": started["state"]}
    foreign = api.post("/complete-oauth", params=frank.org, headers=frank.headers, json=body)
    assert foreign.status_code == 400 and error_code(foreign) == "VALIDATION_ERROR"
    own = api.post("/complete-oauth", params=erin.org, headers=erin.headers, json=body)
    assert own.status_code == 200 and own.json()["connected"] is False
