"""The OpenAPI document, made to say what the service does where FastAPI's own cannot know it.

FastAPI documents a 422 ``HTTPValidationError`` on every operation, optional query parameters
where a route refuses requests without them, and no authentication. Here every error is the
SPEC §2 envelope at the status the service answers with, ``organization_id`` is required
unless a route says otherwise, API routes declare the two ways of sending a key (the Authorize
button of ``/docs``), and links chain the operations (an id read from one answer used by the
next), for clients and for stateful tests.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute

from personal_connectors.config import API_PREFIX
from personal_connectors.http.envelope import ErrorEnvelope

ENVELOPE_REF = "#/components/schemas/Error"
API_KEY_SCHEME = "ApiKeyHeader"
BEARER_SCHEME = "BearerAuth"
SECURITY_SCHEMES: dict[str, dict[str, Any]] = {
    API_KEY_SCHEME: {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": "An API key (`ak_…`) in the `X-API-Key` header.",
    },
    BEARER_SCHEME: {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "ak_…",
        "description": "The same API key as `Authorization: Bearer ak_…`.",
    },
}
# Either scheme (OpenAPI: alternatives are separate entries of the list).
KEY_REQUIRED: list[dict[str, list[str]]] = [{API_KEY_SCHEME: []}, {BEARER_SCHEME: []}]
# A route's ``openapi_extra`` for routes that take no key (the OAuth callback).
PUBLIC: dict[str, Any] = {"security": []}
# A route's ``openapi_extra`` for routes that work without ``organization_id`` (it is read from
# here and removed: it is an instruction to this module, not part of the document).
_ORGANIZATION_OPTIONAL_KEY = "x-organization-optional"
ORGANIZATION_OPTIONAL: dict[str, Any] = {_ORGANIZATION_OPTIONAL_KEY: True}
ORGANIZATION_PARAMETER = "organization_id"

ERROR_DESCRIPTIONS = {
    400: "Bad request: `VALIDATION_ERROR` (`details.fields` names the fields) or a "
    "domain refusal such as `CONNECTOR_NOT_CONFIGURED`.",
    401: "No API key, or one that is invalid, expired, paused or deactivated.",
    403: "`ORGANIZATION_ACCESS_DENIED` (not a member, or no such organization) or "
    "`INSUFFICIENT_PERMISSIONS`.",
    404: "`RESOURCE_NOT_FOUND`: unknown, or not the caller's.",
    409: "The resource's state forbids it (e.g. `REAUTHORIZATION_REQUIRED`).",
    413: "`PAYLOAD_TOO_LARGE`: the body is over the limit (64 KiB by default).",
    431: "`REQUEST_HEADERS_TOO_LARGE`: the request line and headers are over the limit (32 KiB "
    "by default, `CONNECTORS_HTTP_MAX_HEADER_BYTES`).",
    429: "`RATE_LIMIT_EXCEEDED`: the caller's rate limit is spent (when the operator set "
    "one); `Retry-After` says when to try again, as the `x-ratelimit-*` headers of every answer "
    "do.",
    502: "`PROVIDER_ERROR`: the provider answered wrongly.",
    503: "Unavailable (`PROVIDER_UNAVAILABLE`, `SERVICE_UNAVAILABLE`); see `Retry-After`.",
    504: "`PROVIDER_TIMEOUT`: the provider took too long.",
}


def error_response(status: int) -> dict[str, Any]:
    return {
        "description": ERROR_DESCRIPTIONS.get(status, "An error, in the envelope."),
        "content": {"application/json": {"schema": {"$ref": ENVELOPE_REF}}},
    }


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """A route's ``responses=`` for the statuses only it can answer (409, 502, 503, …); the
    ones every route of its kind answers (400, 401, 403, 404, 413) are added here."""
    return {status: error_response(status) for status in statuses}


# Links between operations (OpenAPI 3.1 §4.8.20), by operation id and response status: an id
# one answer carries, used by the next call. The organization goes along from the request.
_SAME_ORGANIZATION = {ORGANIZATION_PARAMETER: "$request.query.organization_id"}


def _link(operation_id: str, **parameters: str) -> dict[str, Any]:
    return {"operationId": operation_id, "parameters": {**_SAME_ORGANIZATION, **parameters}}


_FIRST_CONNECTION = {"connection_id": "$response.body#/0/id"}
LINKS: dict[tuple[str, str], dict[str, dict[str, Any]]] = {
    ("list_connections", "200"): {
        name: _link(name, **_FIRST_CONNECTION)
        for name in (
            "get_connection",
            "get_health",
            "issue_token",
            "check_connection",
            "configure_tools",
            "set_active",
            "delete_connection",
        )
    },
    ("authorize", "200"): {
        "complete_oauth": {
            "operationId": "complete_oauth",
            "parameters": _SAME_ORGANIZATION,
            "requestBody": {"state_token": "$response.body#/state_token"},
        }
    },
    ("list_available", "200"): {
        "get_available": _link("get_available", tool_key="$response.body#/data/0/tool_key"),
        "list_tool_connections": _link(
            "list_tool_connections", tool_key="$response.body#/data/0/tool_key"
        ),
    },
    ("set_app", "200"): {
        "delete_app": _link("delete_app", app_key="$response.body#/app_key"),
        "get_available": _link("get_available", tool_key="$response.body#/app_key"),
    },
    ("create_webhook", "201"): {
        name: _link(name, endpoint_id="$response.body#/id")
        for name in ("delete_webhook", "rotate_webhook_secret")
    },
    ("list_webhooks", "200"): {
        name: _link(name, endpoint_id="$response.body#/data/0/id")
        for name in ("delete_webhook", "rotate_webhook_secret")
    },
}


def _fastapi_description(code: str, response: dict[str, Any]) -> bool:
    """Whether a response's description is FastAPI's stand-in (the status phrase, or "Additional
    Response"), not one the route wrote itself (which is kept)."""
    return response.get("description") in (
        None,
        "Additional Response",
        HTTPStatus(int(code)).phrase,
    )


def operation_id(route: APIRoute) -> str:
    """The route's function name: short, stable, unique (a test holds it), for links and for
    the method names of generated clients."""
    return route.name


def _complete_operation(path: str, operation: dict[str, Any]) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    responses.pop("422", None)
    parameters: list[dict[str, Any]] = operation.get("parameters", [])
    optional_organization = operation.pop(_ORGANIZATION_OPTIONAL_KEY, False)
    for parameter in parameters:
        if parameter["name"] == ORGANIZATION_PARAMETER and parameter["in"] == "query":
            parameter["required"] = not optional_organization
    if path.startswith(API_PREFIX):
        operation.setdefault("security", KEY_REQUIRED)
    statuses: list[int] = []
    if parameters or "requestBody" in operation:
        statuses.append(400)
    if operation.get("security"):
        statuses.extend((401, 429))  # 429: when CONNECTORS_RATE_LIMIT* is set
    if any(p["name"] == ORGANIZATION_PARAMETER for p in parameters):
        statuses.append(403)
    if any(p["in"] == "path" for p in parameters):
        statuses.append(404)
    if "requestBody" in operation:
        statuses.append(413)
    if any(p["in"] == "query" for p in parameters):
        statuses.append(431)  # a query string can make the request line too long
    for status in statuses:
        responses.setdefault(str(status), error_response(status))
    for code, response in responses.items():
        if code[0] in "45":  # an error a route declared itself is in the envelope too
            if _fastapi_description(code, response):
                response["description"] = error_response(int(code))["description"]
            response.setdefault("content", {}).setdefault(
                "application/json", {"schema": {"$ref": ENVELOPE_REF}}
            )
    for (source, code), links in LINKS.items():
        if source == operation["operationId"]:
            responses[code].setdefault("links", {}).update(links)
    operation["responses"] = dict(sorted(responses.items()))


def complete_document(document: dict[str, Any]) -> dict[str, Any]:
    """FastAPI's document, corrected as the module docstring says (in place, and returned)."""
    components = document.setdefault("components", {})
    schemas: dict[str, Any] = components.setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    envelope = ErrorEnvelope.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(envelope.pop("$defs", {}))
    schemas["Error"] = envelope
    components["securitySchemes"] = SECURITY_SCHEMES
    for path, item in document.get("paths", {}).items():
        for operation in item.values():
            _complete_operation(path, operation)
    components["schemas"] = dict(sorted(schemas.items()))
    return document


def install_openapi(app: FastAPI) -> None:
    """Serve the corrected document at ``app.openapi_url`` (built once, on first request)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = complete_document(
                get_openapi(
                    title=app.title,
                    version=app.version,
                    openapi_version=app.openapi_version,
                    description=app.description,
                    routes=app.routes,
                )
            )
        return app.openapi_schema

    setattr(app, "openapi", openapi)  # noqa: B010 - FastAPI's documented way to replace it
