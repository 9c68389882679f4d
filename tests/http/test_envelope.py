"""Every error, from every route, middleware and crash, comes in the envelope of SPEC §2."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.conftest import Tenant
from tests.support import web
from tests.support.envelope import is_envelope


def assert_envelope(response: httpx.Response, status: int, code: str) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert is_envelope(body, status), body
    error = body["error"]
    assert error["code"] == code
    assert re.fullmatch(r"req_[0-9a-f]{32}", error["trace_id"])
    assert error["trace_id"] == response.headers["x-request-id"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", error["timestamp"])
    return dict(error)


def test_unknown_route_and_wrong_method(api: httpx.Client, service) -> None:  # type: ignore[no-untyped-def]
    assert_envelope(web.get(f"{service.base_url}/nowhere"), 404, "RESOURCE_NOT_FOUND")
    assert_envelope(api.put("/authorize"), 405, "METHOD_NOT_ALLOWED")


def test_missing_and_bad_api_keys(api: httpx.Client, tenant: Tenant) -> None:
    assert_envelope(api.get("", params=tenant.org), 401, "AUTHENTICATION_REQUIRED")
    assert_envelope(
        api.get("", params=tenant.org, headers={"X-API-Key": "ak_" + "x" * 40}),
        401,
        "INVALID_API_KEY",
    )
    assert_envelope(
        api.get("", params=tenant.org, headers={"X-API-Key": "not-a-key"}), 401, "INVALID_API_KEY"
    )
    bearer = api.get("", params=tenant.org, headers={"Authorization": f"Bearer {tenant.api_key}"})
    assert bearer.status_code == 200


def test_organization_access_is_denied_alike_for_foreign_and_unknown(
    api: httpx.Client, tenant: Tenant, other_tenant: Tenant
) -> None:
    foreign = assert_envelope(
        api.get("", params=other_tenant.org, headers=tenant.headers),
        403,
        "ORGANIZATION_ACCESS_DENIED",
    )
    unknown = assert_envelope(
        api.get("", params={"organization_id": "org_" + "f" * 32}, headers=tenant.headers),
        403,
        "ORGANIZATION_ACCESS_DENIED",
    )
    assert {k: v for k, v in foreign.items() if k not in {"trace_id", "timestamp"}} == {
        k: v for k, v in unknown.items() if k not in {"trace_id", "timestamp"}
    }
    camel = api.get("", params={"organizationId": tenant.organization_id}, headers=tenant.headers)
    assert camel.status_code == 200
    missing = assert_envelope(api.get("", headers=tenant.headers), 400, "VALIDATION_ERROR")
    assert missing["details"] == {"fields": ["organization_id"]}


@pytest.mark.parametrize(
    ("content", "fields"),
    [
        (b"{not json", ["body"]),
        (b'{"connector_type": 5}', ["connector_type"]),
        (b'{"connector_type": "local-oidc", "scopes": "openid"}', ["scopes"]),
        (b'{"connector_type": "local-oidc", "completion": "later"}', ["completion"]),
        (b'{"connector_type": "local-oidc", "surprise": 1}', ["surprise"]),
        (b"[]", ["body"]),
        (b"{}", ["connector_type"]),
    ],
)
def test_bad_bodies_are_400_never_422(
    api: httpx.Client, tenant: Tenant, content: bytes, fields: list[str]
) -> None:
    response = api.post(
        "/authorize",
        params=tenant.org,
        headers={**tenant.headers, "Content-Type": "application/json"},
        content=content,
    )
    error = assert_envelope(response, 400, "VALIDATION_ERROR")
    assert error["details"]["fields"] == fields  # type: ignore[index]


def test_unknown_query_values_are_400(api: httpx.Client, tenant: Tenant) -> None:
    error = assert_envelope(
        api.get("", params={**tenant.org, "status": "weird"}, headers=tenant.headers),
        400,
        "VALIDATION_ERROR",
    )
    assert error["details"] == {"fields": ["status"]}


def test_oversized_bodies_are_413(api: httpx.Client, tenant: Tenant) -> None:
    big = b'{"connector_type": "' + b"a" * (70 * 1024) + b'"}'
    assert_envelope(
        api.post("/authorize", params=tenant.org, headers=tenant.headers, content=big),
        413,
        "PAYLOAD_TOO_LARGE",
    )

    def chunks():  # type: ignore[no-untyped-def]
        for _ in range(80):
            yield b" " * 1024

    chunked = api.post(
        "/authorize",
        params=tenant.org,
        headers={**tenant.headers, "Content-Type": "application/json"},
        content=chunks(),
    )
    assert_envelope(chunked, 413, "PAYLOAD_TOO_LARGE")


def test_every_response_carries_a_request_id(api: httpx.Client, service, tenant: Tenant) -> None:  # type: ignore[no-untyped-def]
    for response in (
        web.get(f"{service.base_url}/livez"),
        web.get(f"{service.base_url}/readyz"),
        api.get("", params=tenant.org, headers=tenant.headers),
        web.get(f"{service.base_url}/openapi.json"),
    ):
        assert re.fullmatch(r"req_[0-9a-f]{32}", response.headers["x-request-id"])
    assert web.get(f"{service.base_url}/livez").json() == {"status": "ok"}
    assert web.get(f"{service.base_url}/readyz").json() == {"status": "ok"}
    assert web.get(f"{service.base_url}/docs").status_code == 200
