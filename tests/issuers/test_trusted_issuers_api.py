"""Trusted issuers (SPEC §8): owners and admins add, list, read and delete them; URLs follow the
outbound rule; several issuers need distinct prefixes that cannot run into each other; nothing
is visible from another organization; a bad request changes nothing."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from personal_connectors.models import Role
from tests.conftest import Tenant, make_tenant
from tests.support.envelope import is_envelope
from tests.support.service import ServiceProcess

ISSUER = "https://idp.example.test"


def add(api: httpx.Client, tenant: Tenant, **body: Any) -> httpx.Response:
    return api.post(
        "/trusted-issuers",
        params=tenant.org,
        headers=tenant.headers,
        json={"issuer": ISSUER, "audience": "platform", **body},
    )


def listed(api: httpx.Client, tenant: Tenant) -> list[dict[str, Any]]:
    response = api.get("/trusted-issuers", params=tenant.org, headers=tenant.headers)
    assert response.status_code == 200
    body: list[dict[str, Any]] = response.json()
    return body


def test_an_admin_adds_reads_lists_and_deletes_an_issuer(api: httpx.Client, tenant: Tenant) -> None:
    created = add(api, tenant, jwks_uri="https://idp.example.test/keys", end_user_prefix="idp|")
    assert created.status_code == 201
    body = created.json()
    assert body["id"].startswith("tis_")
    assert {k: body[k] for k in ("issuer", "audience", "jwks_uri", "subject_claim")} == {
        "issuer": ISSUER,
        "audience": "platform",
        "jwks_uri": "https://idp.example.test/keys",
        "subject_claim": "sub",
    }
    assert listed(api, tenant) == [body]
    one = api.get(f"/trusted-issuers/{body['id']}", params=tenant.org, headers=tenant.headers)
    assert one.json() == body
    gone = api.delete(f"/trusted-issuers/{body['id']}", params=tenant.org, headers=tenant.headers)
    assert gone.status_code == 204
    assert listed(api, tenant) == []
    again = api.get(f"/trusted-issuers/{body['id']}", params=tenant.org, headers=tenant.headers)
    assert again.status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"issuer": "http://idp.example.test"}, "issuer"),  # plain http beyond loopback
        ({"issuer": "https://169.254.169.254/"}, "issuer"),
        ({"issuer": "https://10.0.0.5"}, "issuer"),
        ({"issuer": "not a url"}, "issuer"),
        ({"jwks_uri": "https://[fd00::1]/keys"}, "jwks_uri"),
        ({"jwks_uri": "https://user:pw@idp.example.test/keys"}, "jwks_uri"),
        ({"audience": ""}, "audience"),
        ({"end_user_prefix": "has space"}, "end_user_prefix"),
        ({"subject_claim": ""}, "subject_claim"),
        ({"secret": "x"}, "secret"),  # unknown fields are refused
    ],
)
def test_bad_bodies_are_refused_and_change_nothing(
    api: httpx.Client, tenant: Tenant, body: dict[str, Any], field: str
) -> None:
    response = add(api, tenant, **body)
    assert response.status_code == 400
    assert is_envelope(response.json(), 400)
    assert response.json()["error"]["code"] == "VALIDATION_ERROR"
    assert field in response.text
    assert listed(api, tenant) == []


def test_several_issuers_need_prefixes_that_cannot_run_into_each_other(
    api: httpx.Client, tenant: Tenant
) -> None:
    assert add(api, tenant).status_code == 201  # one issuer needs no prefix
    second = {"issuer": "https://other.example.test", "end_user_prefix": "other|"}
    refused = add(api, tenant, **second)
    assert refused.status_code == 400 and "end_user_prefix" in refused.text  # the first has none
    first_id = listed(api, tenant)[0]["id"]
    api.delete(f"/trusted-issuers/{first_id}", params=tenant.org, headers=tenant.headers)
    assert add(api, tenant, end_user_prefix="a|").status_code == 201
    overlapping = add(api, tenant, issuer="https://b.example.test", end_user_prefix="a|b")
    assert overlapping.status_code == 400  # "a|" + "b1" would be "a|b" + "1"
    assert (
        add(api, tenant, issuer="https://b.example.test", end_user_prefix="b|").status_code == 201
    )
    duplicate = add(api, tenant, end_user_prefix="c|")
    assert duplicate.status_code == 409 and is_envelope(duplicate.json(), 409)
    assert [row["end_user_prefix"] for row in listed(api, tenant)] == ["a|", "b|"]


def test_members_and_other_organizations_cannot_see_or_change_them(
    api: httpx.Client, service: ServiceProcess, tenant: Tenant, other_tenant: Tenant
) -> None:
    issuer_id = add(api, tenant).json()["id"]
    member = make_tenant(service, Role.MEMBER)
    assert add(api, member).status_code == 403
    assert api.get("/trusted-issuers", params=member.org, headers=member.headers).status_code == 403
    foreign = api.get(
        f"/trusted-issuers/{issuer_id}", params=other_tenant.org, headers=other_tenant.headers
    )
    assert foreign.status_code == 404
    deleted = api.delete(
        f"/trusted-issuers/{issuer_id}", params=other_tenant.org, headers=other_tenant.headers
    )
    assert deleted.status_code == 404
    assert [row["id"] for row in listed(api, tenant)] == [issuer_id]
