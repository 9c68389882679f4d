"""The OpenAPI document the service serves is valid and says what the service does: errors in
the envelope at their real statuses (never 422), required parameters required, the key's two
headers as security schemes, links between operations that exist."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from openapi_spec_validator import validate

from tests.conftest import Tenant
from tests.support import web
from tests.support.envelope import is_envelope
from tests.support.service import ServiceProcess

API = "/v1/personal-connectors"
ENVELOPE = {"$ref": "#/components/schemas/Error"}
METHODS = {"get", "put", "post", "delete", "patch"}
# Routes that work without organization_id (SPEC §3.1: DELETE is not an "(org)" route).
ORGANIZATION_OPTIONAL = {"delete_connection"}
PUBLIC = {"callback", "livez", "readyz"}


@pytest.fixture
def document(service: ServiceProcess) -> dict[str, Any]:
    response = web.get(f"{service.base_url}/openapi.json")
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield path, method, operation


def test_the_document_is_valid_openapi(document: dict[str, Any]) -> None:
    validate(document)
    assert document["openapi"].startswith("3.")
    ids = [operation["operationId"] for _, _, operation in operations(document)]
    assert len(ids) == len(set(ids)) >= 20


OAUTH_TOKEN = "/v1/personal-connectors/oauth/token"
OAUTH_ERRORS = ("400", "401", "429", "503")


def test_errors_are_the_envelope_at_400_never_422(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    assert "HTTPValidationError" not in schemas
    assert "ValidationError" not in schemas
    assert schemas["Error"]["required"] == ["success", "error"]
    for path, method, operation in operations(document):
        responses = operation["responses"]
        assert "422" not in responses, (method, path)
        if operation.get("parameters") or "requestBody" in operation:
            assert "400" in responses, (method, path)
        for status, response in responses.items():
            schema = response.get("content", {}).get("application/json", {}).get("schema")
            if path == OAUTH_TOKEN and status in OAUTH_ERRORS:
                # SPEC §8: the token exchange answers as OAuth clients read it (RFC 6749 §5.2).
                assert schema == {"$ref": "#/components/schemas/OAuthErrorOut"}, status
            elif status[0] in "45":
                assert schema == ENVELOPE, (method, path, status)


def test_each_operation_lists_the_errors_it_can_answer(document: dict[str, Any]) -> None:
    by_id = {operation["operationId"]: operation for _, _, operation in operations(document)}
    for path, method, operation in operations(document):
        responses = set(operation["responses"])
        parameters = operation.get("parameters", [])
        where = (method, path)
        if operation["operationId"] not in PUBLIC:
            assert "401" in responses, where
        if any(p["name"] == "organization_id" for p in parameters):
            assert "403" in responses, where
        if any(p["in"] == "path" for p in parameters):
            assert "404" in responses, where
        if "requestBody" in operation:
            assert "413" in responses, where
    # Statuses only some routes answer.
    assert {"409", "502", "503"} <= set(by_id["issue_token"]["responses"])
    assert "409" in by_id["create_webhook"]["responses"]
    assert {"429", "502", "503"} <= set(by_id["authorize"]["responses"])
    assert "429" in by_id["create_connect_session"]["responses"]
    assert "503" in by_id["readyz"]["responses"]


def test_the_token_route_declares_required_scopes_and_its_409(document: dict[str, Any]) -> None:
    [operation] = [op for _, _, op in operations(document) if op["operationId"] == "issue_token"]
    [parameter] = [p for p in operation["parameters"] if p["name"] == "required_scopes"]
    assert parameter["in"] == "query" and not parameter["required"]
    assert "INSUFFICIENT_SCOPE" in operation["responses"]["409"]["description"]


def test_complete_oauth_declares_wait_and_its_bounds(document: dict[str, Any]) -> None:
    [operation] = [op for _, _, op in operations(document) if op["operationId"] == "complete_oauth"]
    [parameter] = [p for p in operation["parameters"] if p["name"] == "wait"]
    assert parameter["in"] == "query" and not parameter["required"]
    assert parameter["schema"]["minimum"] == 0 and parameter["schema"]["maximum"] == 60


def test_organization_id_is_required_where_the_service_requires_it(
    document: dict[str, Any],
) -> None:
    seen = 0
    for path, method, operation in operations(document):
        for parameter in operation.get("parameters", []):
            if parameter["name"] == "organization_id":
                seen += 1
                optional = operation["operationId"] in ORGANIZATION_OPTIONAL
                assert parameter["required"] is not optional, (method, path)
    assert seen >= 20


def test_what_the_document_requires_the_service_refuses_without(
    document: dict[str, Any], service: ServiceProcess, tenant: Tenant
) -> None:
    """Each operation called without organization_id (and a valid key): a 400 naming it
    exactly where the document says it is required."""
    for path, method, operation in operations(document):
        declared = {p["name"]: p for p in operation.get("parameters", [])}
        if "organization_id" not in declared:
            continue
        filled = path
        for name, parameter in declared.items():
            if parameter["in"] == "path":
                filled = filled.replace(f"{{{name}}}", "conn_" + "0" * 32)
        response = web.request(
            method.upper(), f"{service.base_url}{filled}", headers=tenant.headers, json={}
        )
        body = response.json() if response.status_code >= 400 else None
        if declared["organization_id"]["required"]:
            assert response.status_code == 400, (method, path, response.text)
            assert is_envelope(body, 400)
            assert body["error"]["details"]["fields"] == ["organization_id"], (method, path)
        else:
            assert response.status_code != 400, (method, path, response.text)


def test_api_operations_declare_the_two_ways_to_send_a_key(document: dict[str, Any]) -> None:
    schemes = document["components"]["securitySchemes"]
    assert schemes["ApiKeyHeader"] == {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": schemes["ApiKeyHeader"]["description"],
    }
    assert schemes["BearerAuth"]["type"] == "http"
    assert schemes["BearerAuth"]["scheme"] == "bearer"
    for path, method, operation in operations(document):
        if operation["operationId"] in PUBLIC:
            assert not operation.get("security"), (method, path)
        else:
            assert path.startswith(API)
            assert operation["security"] == [{"ApiKeyHeader": []}, {"BearerAuth": []}]


def test_links_name_operations_and_parameters_that_exist(document: dict[str, Any]) -> None:
    by_id = {operation["operationId"]: operation for _, _, operation in operations(document)}
    count = 0
    for _, _, operation in operations(document):
        for response in operation["responses"].values():
            for link in response.get("links", {}).values():
                count += 1
                target = by_id[link["operationId"]]
                names = {p["name"] for p in target.get("parameters", [])}
                assert set(link.get("parameters", {})) <= names, link
                if "requestBody" in link:
                    assert "requestBody" in target
    assert count >= 10
    to_token = by_id["list_connections"]["responses"]["200"]["links"]["issue_token"]
    assert to_token["parameters"]["connection_id"] == "$response.body#/0/id"
