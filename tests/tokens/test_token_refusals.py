"""POST /{id}/token refuses as every other route does, through its own one-query lookup (key,
membership and connection read together): a missing, wrong, paused, deactivated or expired key,
an organization the caller is not in, and a connection that is not the caller's. Each refusal
is checked on the short path (no query beyond the organization) and on the declared handler
(``force_refresh``), after the key has already been used once, so nothing remembered from an
earlier answer lets a refused key through."""

from __future__ import annotations

import os
from datetime import timedelta

import httpx
import pytest

from personal_connectors.identity.service import IdentityService
from personal_connectors.models import APIKey, APIKeyStatus, Role, utcnow
from tests.conftest import Tenant, make_tenant
from tests.flows.conftest import connect
from tests.support.db import update_row
from tests.support.envelope import is_envelope
from tests.support.service import ServiceProcess

# The short path, and the handler FastAPI built (a parameter to validate sends it there).
PATHS = [{}, {"force_refresh": "false"}]


def ask(
    api: httpx.Client,
    connection_id: str,
    headers: dict[str, str],
    params: dict[str, str],
) -> list[httpx.Response]:
    return [
        api.post(f"/{connection_id}/token", params={**params, **extra}, headers=headers)
        for extra in PATHS
    ]


def assert_refused(responses: list[httpx.Response], status: int, code: str) -> None:
    for response in responses:
        assert response.status_code == status, response.text
        body = response.json()
        assert is_envelope(body, status) and body["error"]["code"] == code, body
        assert "access_token" not in response.text


def colleague(service: ServiceProcess, tenant: Tenant) -> Tenant:
    """Another member of ``tenant``'s organization, with a key of their own."""

    async def work(session, runtime):  # type: ignore[no-untyped-def]
        identities = IdentityService(session)
        user = await identities.create_user(
            f"{os.urandom(6).hex()}@example.test", tenant.organization_id, role=Role.MEMBER
        )
        issued = await identities.create_api_key(user.id)
        return Tenant(tenant.organization_id, user.id, issued.plaintext, issued.key.id)

    return service.run_db(work)


@pytest.fixture
def connection_id(api: httpx.Client, tenant: Tenant) -> str:
    connection_id = connect(api, tenant)
    for response in ask(api, connection_id, tenant.headers, tenant.org):
        assert response.status_code == 200, response.text  # the key works, and was just used
    return connection_id


def test_no_key_and_a_wrong_or_malformed_key_are_401(
    api: httpx.Client, tenant: Tenant, connection_id: str
) -> None:
    assert_refused(ask(api, connection_id, {}, tenant.org), 401, "AUTHENTICATION_REQUIRED")
    wrong = {"X-API-Key": "ak_" + os.urandom(20).hex()}
    assert_refused(ask(api, connection_id, wrong, tenant.org), 401, "INVALID_API_KEY")
    one_off = tenant.one_off_headers
    assert_refused(ask(api, connection_id, one_off, tenant.org), 401, "INVALID_API_KEY")
    malformed = {"X-API-Key": "not-a-key"}
    assert_refused(ask(api, connection_id, malformed, tenant.org), 401, "INVALID_API_KEY")
    bearer = {"Authorization": "Bearer ak_" + os.urandom(20).hex()}
    assert_refused(ask(api, connection_id, bearer, tenant.org), 401, "INVALID_API_KEY")


@pytest.mark.parametrize(
    ("values", "code"),
    [
        ({"status": APIKeyStatus.PAUSED}, "API_KEY_PAUSED"),
        ({"status": APIKeyStatus.DEACTIVATED}, "API_KEY_DEACTIVATED"),
        ({"expires_at": utcnow() - timedelta(seconds=1)}, "API_KEY_EXPIRED"),
    ],
    ids=["paused", "deactivated", "expired"],
)
def test_a_key_that_is_no_longer_active_is_refused_at_once(
    api: httpx.Client,
    tenant: Tenant,
    service: ServiceProcess,
    connection_id: str,
    values: dict[str, object],
    code: str,
) -> None:
    update_row(service, APIKey, tenant.api_key_id, **values)
    assert_refused(ask(api, connection_id, tenant.headers, tenant.org), 401, code)
    # The key is judged before the organization: a foreign one changes nothing.
    foreign = {"organization_id": "org_" + "0" * 32}
    assert_refused(ask(api, connection_id, tenant.headers, foreign), 401, code)
    update_row(service, APIKey, tenant.api_key_id, status=APIKeyStatus.ACTIVE, expires_at=None)
    for response in ask(api, connection_id, tenant.headers, tenant.org):
        assert response.status_code == 200, response.text


def test_an_organization_the_caller_is_not_in_is_403_whether_it_exists_or_not(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess, connection_id: str
) -> None:
    other = make_tenant(service)
    assert_refused(
        ask(api, connection_id, tenant.headers, other.org), 403, "ORGANIZATION_ACCESS_DENIED"
    )
    unknown = {"organization_id": "org_" + os.urandom(16).hex()}
    assert_refused(
        ask(api, connection_id, tenant.headers, unknown), 403, "ORGANIZATION_ACCESS_DENIED"
    )
    # The owner of the connection asking from outside its organization is no exception.
    assert_refused(
        ask(api, connection_id, other.headers, tenant.org), 403, "ORGANIZATION_ACCESS_DENIED"
    )


def test_a_connection_that_is_not_the_callers_is_404(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess, connection_id: str
) -> None:
    # Another organization's member, in their own organization.
    other = make_tenant(service)
    assert_refused(ask(api, connection_id, other.headers, other.org), 404, "RESOURCE_NOT_FOUND")
    # Another member of the same organization (an owner included).
    member = colleague(service, tenant)
    assert_refused(ask(api, connection_id, member.headers, member.org), 404, "RESOURCE_NOT_FOUND")
    # Unknown, malformed and deleted connections alike.
    for unknown in ("conn_" + os.urandom(16).hex(), "conn_x", "c" * 64):
        assert_refused(ask(api, unknown, tenant.headers, tenant.org), 404, "RESOURCE_NOT_FOUND")
    assert api.delete(f"/{connection_id}", headers=tenant.headers).status_code == 204
    assert_refused(ask(api, connection_id, tenant.headers, tenant.org), 404, "RESOURCE_NOT_FOUND")


def test_without_an_organization_the_key_is_judged_first_then_400(
    api: httpx.Client, tenant: Tenant, connection_id: str
) -> None:
    assert_refused(ask(api, connection_id, {}, {}), 401, "AUTHENTICATION_REQUIRED")
    for response in ask(api, connection_id, tenant.headers, {}):
        assert response.status_code == 400, response.text
        assert response.json()["error"]["details"] == {"fields": ["organization_id"]}
