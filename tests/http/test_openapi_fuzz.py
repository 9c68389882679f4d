"""Property-based fuzzing of the whole API from its own OpenAPI document (schemathesis).

Strict on three counts. Every documented operation runs in both generation modes: one that
cannot be generated fails the test (only operations with nothing to negate are spared the
negative mode, and they are named). Any 5xx fails (schemathesis' ``not_a_server_error``; 502
and 503 included). Every response is checked against the document by schemathesis' own checks
(status code, content type, response schema and headers, authentication actually enforced,
methods refused with 405), besides the envelope and the key never echoed. A stateful run then
follows the document's links (a connection id from the list into the token, health, test, …
operations; a webhook id from its creation into rotation and deletion) from real data.

Valid data, which reaches the database, runs on both databases; invalid data, which the
request's validation refuses before any query, on SQLite only: the same code on both
databases, and the costliest part of the fuzz.
"""

from __future__ import annotations

import os
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.generation.stateful.state_machine import APIStateMachine

from tests.conftest import Tenant, make_tenant
from tests.flows.conftest import connect
from tests.support import web
from tests.support.envelope import is_envelope
from tests.support.service import ServiceProcess

# Operations without a parameter or a body: there is nothing to make invalid.
NOTHING_TO_NEGATE = {"livez", "readyz"}
EXAMPLES = 12
FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
    # The suite's run draws the same examples every time (a green run stays green); set
    # PC_TEST_FUZZ_RANDOM=1 to explore new ones, as a fuzzing session should.
    derandomize=os.environ.get("PC_TEST_FUZZ_RANDOM") != "1",
)


def load_schema(service: ServiceProcess) -> Any:
    schema = schemathesis.openapi.from_url(f"{service.base_url}/openapi.json")
    # Valid by the schema yet refused for what it cannot express (an unknown connector key, a
    # return URL outside the allowed origins): a 400 is an acceptable answer to valid data.
    schema.config.checks.positive_data_acceptance.expected_statuses.append("400")
    # Invalid data can also be too large: a body over the limit (413) or a value over its
    # maxLength that makes the request line too long (431); both in the envelope, documented.
    rejections = schema.config.checks.negative_data_rejection.expected_statuses
    rejections.extend(status for status in ("413", "431") if status not in rejections)
    return schema


# Uvicorn's HTTP parser refuses some requests (a URL over its line limit: five 4096-character
# callback parameters, percent-encoded) before the application sees them; that plain-text 400
# is the server's, outside the document, and is checked to be only that.
PROTOCOL_REJECTION = "Invalid HTTP request received."
OAUTH_TOKEN = "/v1/personal-connectors/oauth/token"


def is_protocol_rejection(response: Any) -> bool:
    if response.status_code == 400 and response.text == PROTOCOL_REJECTION:
        assert len(response.request.url) > 8000, response.request.url
        return True
    return False


def check_envelope(response: Any, tenant: Tenant) -> None:
    """What schemathesis does not know: every error in the envelope, with its trace id, and
    the caller's key nowhere in an answer."""
    assert response.headers.get("x-request-id", [""])[0].startswith("req_"), (
        response.status_code,
        response.request.method,
        response.request.url,
    )
    if response.status_code >= 400:
        body = httpx.Response(response.status_code, content=response.content).json()
        if response.request.url.split("?")[0].endswith(OAUTH_TOKEN) and response.status_code in (
            400,
            401,
            503,
        ):
            # SPEC §8: the token exchange answers as OAuth clients read it (RFC 6749 §5.2).
            assert set(body) == {"error", "error_description"}, body
        else:
            assert is_envelope(body, response.status_code), body
    assert tenant.api_key not in response.text


@pytest.mark.parametrize(
    ("service", "mode"),
    [
        ("sqlite", schemathesis.GenerationMode.POSITIVE),
        ("postgres", schemathesis.GenerationMode.POSITIVE),
        ("sqlite", schemathesis.GenerationMode.NEGATIVE),
    ],
    ids=["sqlite-positive", "postgres-positive", "sqlite-negative"],
    indirect=["service"],
)
def test_every_operation_answers_as_documented(
    service: ServiceProcess, mode: schemathesis.GenerationMode
) -> None:
    tenant = make_tenant(service)
    schema = load_schema(service)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20
    headers = {**tenant.headers, "Accept": "application/json"}
    exercised: list[str] = []
    for operation in operations:
        name = operation.definition.raw["operationId"]
        has_org = any(p.name == "organization_id" for p in operation.query)
        # With the caller's organization (reaching the route's logic), and with a generated one.
        for organization_id in [tenant.organization_id, None] if has_org else [None]:
            query = {"organization_id": organization_id} if organization_id else None
            strategy = operation.as_strategy(generation_mode=mode, query=query)

            @given(case=strategy)
            @FUZZ_SETTINGS
            def run(case: Any) -> None:
                response = case.call(base_url=service.base_url, headers=headers)
                if is_protocol_rejection(response):
                    return
                case.validate_response(response, headers=headers)
                check_envelope(response, tenant)

            try:
                run()
            except Unsatisfiable:
                assert mode is schemathesis.GenerationMode.NEGATIVE, name
                assert name in NOTHING_TO_NEGATE, f"{name}: no negative case could be generated"
                continue
            exercised.append(name)
    expected = {op.definition.raw["operationId"] for op in operations}
    if mode is schemathesis.GenerationMode.NEGATIVE:
        expected -= NOTHING_TO_NEGATE
    assert set(exercised) == expected


# Each family of linked operations runs as its own state machine, from its list (of real data,
# made first) rather than from a creation with random input that is all but always refused.
LINKED = {
    "connections": (
        "list_connections",
        {
            "get_connection",
            "get_health",
            "issue_token",
            "check_connection",
            "configure_tools",
            "set_active",
        },  # not delete_connection: one example would leave the later ones nothing to follow
    ),
    "webhooks": ("list_webhooks", {"delete_webhook", "rotate_webhook_secret"}),
    "catalog": ("list_available", {"get_available", "list_tool_connections"}),
}


@pytest.mark.parametrize("family", list(LINKED))
def test_sequences_through_the_documents_links(service: ServiceProcess, family: str) -> None:
    """Stateful: schemathesis chains calls through the document's links with the ids real
    answers carry (a connection made through the local provider, a webhook endpoint)."""
    tenant = make_tenant(service)
    with web.client(base_url=service.api, timeout=30) as api:
        connect(api, tenant)
        created = api.post(
            "/webhooks",
            params=tenant.org,
            headers=tenant.headers,
            json={"url": "https://hooks.example.test/in"},
        )
        assert created.status_code == 201, created.text
    root, targets = LINKED[family]
    schema = load_schema(service).include(operation_id=[root, *targets])
    headers = {**tenant.headers, "Accept": "application/json"}
    followed: set[str] = set()

    class Sequences(schema.as_state_machine()):  # type: ignore[misc]
        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            # The list unfiltered (a generated filter would hide the data to follow).
            unfiltered = case.operation.definition.raw["operationId"] == root
            kept = {} if unfiltered else (case.query or {})
            case.query = {**kept, "organization_id": tenant.organization_id}
            return {"base_url": service.base_url, "headers": headers}

        def after_call(self, response: Any, case: Any) -> None:
            super().after_call(response, case)
            if response.status_code < 300:
                followed.add(case.operation.definition.raw["operationId"])

        def validate_response(self, response: Any, case: Any, **kwargs: Any) -> None:
            if not is_protocol_rejection(response):
                super().validate_response(response, case, **kwargs)
                check_envelope(response, tenant)

    assert issubclass(Sequences, APIStateMachine)
    Sequences.run(
        settings=settings(
            max_examples=30,
            stateful_step_count=6,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
            derandomize=FUZZ_SETTINGS.derandomize,
        )
    )
    # The links were followed with real ids: the list and operations it leads to answered 2xx.
    assert root in followed, followed
    assert followed & targets, followed
