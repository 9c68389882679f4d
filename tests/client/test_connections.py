"""``Connectors`` against the running service: typed connections, the list paged by its Link
header, tags, the provider check, disconnecting, and every refusal raised as a
``ConnectorsError`` that carries the service's code, status, trace id and details."""

from __future__ import annotations

from datetime import datetime
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from personal_connectors.client import Connection, Connectors, ConnectorsError
from tests.client.conftest import client_of, connect, logged
from tests.conftest import PROVIDER_KEY, Tenant
from tests.support.service import ServiceProcess


def test_the_list_holds_the_connected_account_as_a_typed_connection(
    pc: Connectors, api: httpx.Client, tenant: Tenant
) -> None:
    connection_id = connect(pc, login="client-list")

    [listed] = pc.connections()
    assert isinstance(listed, Connection)
    assert listed.id == connection_id and listed.app_key == PROVIDER_KEY
    assert listed.account_id == "client-list" and listed.status == "active" and listed.is_active
    assert {"openid", "email"} <= set(listed.scopes)
    assert isinstance(listed.created_at, datetime) and listed.created_at.tzinfo is not None
    assert listed.end_user_id is None and listed.tags == {}
    # The same as the API's own answer, field by field.
    raw = api.get("/", params=tenant.org, headers=tenant.headers).json()[0]
    assert listed == Connection.of(raw)
    assert pc.get(connection_id) == listed
    assert pc.connections(app_key="another-app") == []


def test_the_list_follows_the_link_header_page_by_page(pc: Connectors) -> None:
    ids = [connect(pc, login=f"client-page-{n}") for n in range(3)]

    # One connection a page: the second and third come only from following `rel="next"`.
    paged = [connection.id for connection in pc.iter_connections(page_size=1)]
    assert paged == list(reversed(ids))  # newest first
    assert [connection.id for connection in pc.connections(page_size=2)] == paged


def test_tags_are_merged_and_filter_the_list(pc: Connectors) -> None:
    first, second = connect(pc, login="client-tag-a"), connect(pc, login="client-tag-b")

    updated = pc.update(first, tags={"team": "red", "tier": "gold"}, metadata={"seat": 4})
    assert updated.tags == {"team": "red", "tier": "gold"} and updated.metadata == {"seat": 4}
    assert pc.update(first, tags={"tier": None}).tags == {"team": "red"}  # null removes
    pc.update(second, tags={"team": "blue"})

    assert [c.id for c in pc.connections(tags={"team": "red"})] == [first]
    assert [c.id for c in pc.connections(tags={"team": "blue"})] == [second]


def test_test_and_health_report_on_the_connection(pc: Connectors) -> None:
    connection_id = connect(pc, login="client-test")
    result = pc.test(connection_id)
    assert result.success, result.message
    assert result.connection_id == connection_id and result.tool_key == PROVIDER_KEY
    health = pc.health(connection_id)
    assert health.connection_id == connection_id and health.is_active


def test_a_disabled_connection_hands_out_no_token(pc: Connectors) -> None:
    connection_id = connect(pc, login="client-disabled")
    assert pc.token(connection_id).access_token  # cached from here on

    pc.set_active(connection_id, False)
    assert pc.get(connection_id).is_active is False
    with pytest.raises(ConnectorsError) as refused:
        pc.token(connection_id)  # not from the cache: disabling forgot it
    assert refused.value.status == 409

    pc.set_active(connection_id, True)
    assert pc.token(connection_id).access_token


def test_an_unknown_connection_raises_not_found_with_the_service_trace_id(
    pc: Connectors, service: ServiceProcess
) -> None:
    with pytest.raises(ConnectorsError) as missing:
        pc.get("conn_" + "0" * 32)
    error = missing.value
    assert (error.code, error.status, error.type) == ("RESOURCE_NOT_FOUND", 404, "not_found_error")
    assert error.trace_id is not None and error.trace_id.startswith("req_")
    assert logged(service, error.trace_id)  # the service's own id for that request
    assert error.message and error.details == {}
    assert error.trace_id in str(error)

    # An id is one path segment, whatever it holds: never another route of the service.
    for odd in ("../end-users", "..", "conn_x?status=active"):
        with pytest.raises(ConnectorsError) as strange:
            pc.get(odd)
        assert strange.value.status in (400, 404), odd


def test_insufficient_scope_carries_the_missing_scopes_and_the_authorize_body(
    pc: Connectors,
) -> None:
    connection_id = connect(pc, login="client-scope")

    with pytest.raises(ConnectorsError) as refused:
        pc.token(connection_id, required_scopes=["email", "repo:admin"])
    error = refused.value
    assert (error.code, error.status) == ("INSUFFICIENT_SCOPE", 409)
    assert error.details == {
        "missing_scopes": ["repo:admin"],
        "authorize": {
            "connector_type": PROVIDER_KEY,
            "connection_id": connection_id,
            "scopes": ["repo:admin"],
        },
    }
    assert error.trace_id is not None and error.trace_id.startswith("req_")

    # The details are the authorize call that asks the user for what is missing.
    asking = pc.authorize(**error.details["authorize"])
    assert "repo:admin" in parse_qs(urlsplit(asking.authorization_url).query)["scope"][0]


def test_a_bad_key_and_a_foreign_organization_are_refused(
    service: ServiceProcess, tenant: Tenant, other_tenant: Tenant
) -> None:
    stranger = Connectors(service.base_url, "ak_" + "x" * 40, tenant.organization_id)
    with stranger, pytest.raises(ConnectorsError) as unknown:
        stranger.connections()
    assert (unknown.value.code, unknown.value.status) == ("INVALID_API_KEY", 401)

    wrong = Connectors(service.base_url, tenant.api_key, other_tenant.organization_id)
    with wrong, pytest.raises(ConnectorsError) as denied:
        wrong.connections()
    assert (denied.value.code, denied.value.status) == ("ORGANIZATION_ACCESS_DENIED", 403)


def test_bad_input_is_a_validation_error_naming_the_field(pc: Connectors) -> None:
    with pytest.raises(ConnectorsError) as refused:
        pc.authorize("no-such-connector")
    error = refused.value
    assert (error.code, error.status, error.type) == ("VALIDATION_ERROR", 400, "validation_error")
    assert "connector_type" in error.details["fields"]


def test_delete_disconnects_and_forgets_the_cached_token(
    pc: Connectors, service: ServiceProcess, tenant: Tenant
) -> None:
    connection_id = connect(pc, login="client-delete")
    assert pc.token(connection_id).access_token

    pc.delete(connection_id)

    for call in (pc.get, pc.token, pc.delete):
        with pytest.raises(ConnectorsError) as gone:
            call(connection_id)
        assert (gone.value.code, gone.value.status) == ("RESOURCE_NOT_FOUND", 404)
    # Another client of the same caller sees it gone too.
    with client_of(service, tenant) as other:
        assert other.connections() == []
