"""Property-based fuzzing of the whole API from its own OpenAPI document (schemathesis).

Valid and invalid inputs alike must never produce a 5xx, a 422, or an error outside the envelope.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable

from tests.conftest import Tenant, make_tenant
from tests.support.envelope import is_envelope
from tests.support.service import ServiceProcess

# Uvicorn's HTTP parser refuses some requests (e.g. a URL over its size limit) before the
# application sees them; that plain-text 400 is the server's, not a route's.
PROTOCOL_REJECTION = "Invalid HTTP request received."


def check_response(response: Any, tenant: Tenant) -> None:
    if response.status_code == 400 and response.text == PROTOCOL_REJECTION:
        return
    assert response.status_code < 500 or response.status_code in (502, 503), response.text
    assert response.status_code != 422, response.text
    assert response.headers.get("x-request-id", [""])[0].startswith("req_"), (
        response.status_code,
        response.request.method,
        response.request.url,
        response.request.headers,
        response.text[:200],
    )
    if response.status_code >= 400:
        body = httpx.Response(response.status_code, content=response.content).json()
        assert is_envelope(body, response.status_code), body
    assert tenant.api_key not in response.text


@pytest.mark.parametrize("mode", list(schemathesis.GenerationMode), ids=lambda m: m.value)
def test_no_input_breaks_the_envelope(
    service: ServiceProcess, mode: schemathesis.GenerationMode
) -> None:
    tenant = make_tenant(service)
    schema = schemathesis.openapi.from_url(f"{service.base_url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 8
    exercised = 0
    for operation in operations:
        has_org = any(p.name == "organization_id" for p in operation.query)
        for organization_id in [tenant.organization_id, None] if has_org else [None]:
            query = {"organization_id": organization_id} if organization_id else None
            try:
                strategy = operation.as_strategy(generation_mode=mode, query=query)
            except Exception:  # an operation with nothing to negate in this mode
                continue

            @given(case=strategy)
            @settings(
                max_examples=15,
                deadline=None,
                suppress_health_check=list(HealthCheck),
                database=None,
            )
            def run(case: Any) -> None:
                check_response(
                    case.call(
                        base_url=service.base_url,
                        headers={**tenant.headers, "Accept": "application/json"},
                    ),
                    tenant,
                )

            try:
                run()
                exercised += 1
            except Unsatisfiable:  # nothing to negate in this operation (e.g. /livez)
                assert mode is schemathesis.GenerationMode.NEGATIVE
    assert exercised >= len(operations) // 2
