"""Explicit completion with ``require_verifier``: only the browser that came back from the
provider receives the one-time verifier (with the return_url redirect), and complete-oauth
refuses the flow without it — a user who sent their link to someone else cannot finish it."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import httpx
from sqlalchemy import select

from personal_connectors.crypto.hashing import digest
from personal_connectors.flows.state import state_hash
from personal_connectors.models import Flow
from tests.conftest import RETURN_ORIGIN, Tenant
from tests.connect_page.conftest import envelope_error
from tests.flows.conftest import authorize_and_consent, follow_callback
from tests.support.service import ServiceProcess

RETURN_URL = f"{RETURN_ORIGIN}/connected"


def _complete(api: httpx.Client, tenant: Tenant, state: str, **body: str) -> httpx.Response:
    return api.post(
        "/complete-oauth",
        params=tenant.org,
        headers=tenant.headers,
        json={"state_token": state, **body},
    )


def test_require_verifier_needs_explicit_completion_a_return_url_and_a_browser(
    api: httpx.Client, tenant: Tenant
) -> None:
    for body in (
        {"require_verifier": True, "completion": "explicit"},
        {"require_verifier": True, "return_url": RETURN_URL},
        {
            "require_verifier": True,
            "return_url": RETURN_URL,
            "completion": "explicit",
            "grant": "device_code",
        },
    ):
        response = api.post(
            "/authorize",
            params=tenant.org,
            headers=tenant.headers,
            json={"connector_type": "local-oidc", **body},
        )
        error = envelope_error(response, 400, "VALIDATION_ERROR")
        assert error["details"]["fields"] == ["require_verifier"]


def test_only_the_returning_browsers_verifier_completes_the_flow(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess
) -> None:
    flow = authorize_and_consent(
        api, tenant, completion="explicit", return_url=RETURN_URL, require_verifier=True
    )
    back = follow_callback(flow.callback_url, accept="text/html")
    assert back.status_code == 303
    location = back.headers["location"]
    assert location.startswith(f"{RETURN_URL}?")
    query = parse_qs(urlsplit(location).query)
    verifier = query["verifier"][0]
    assert verifier.startswith("cv_") and query["pending"] == ["complete-oauth"]

    # Kept only as its hash.
    async def stored(session, runtime):  # type: ignore[no-untyped-def]
        statement = select(Flow).where(Flow.state_hash == state_hash(flow.state))
        return (await session.execute(statement)).scalar_one()

    row = service.run_db(stored)
    assert row.verifier_hash == digest(verifier)
    assert verifier not in repr(vars(row))

    # The one who only holds the state (the link's sender) cannot finish it.
    for body in ({}, {"verifier": "cv_" + "A" * 43}, {"verifier": "nonsense"}):
        refused = _complete(api, tenant, flow.state, **body)
        assert envelope_error(refused, 400, "VALIDATION_ERROR")["details"]["fields"] == ["verifier"]
    assert api.get("", params=tenant.org, headers=tenant.headers).json() == []

    done = _complete(api, tenant, flow.state, verifier=verifier)
    assert done.status_code == 200 and done.json()["connected"] is True
    # Idempotent for the same request; still refused without the verifier.
    assert _complete(api, tenant, flow.state, verifier=verifier).json() == done.json()
    envelope_error(_complete(api, tenant, flow.state), 400, "VALIDATION_ERROR")


def test_flows_without_the_option_complete_as_before(api: httpx.Client, tenant: Tenant) -> None:
    flow = authorize_and_consent(api, tenant, completion="explicit", return_url=RETURN_URL)
    back = follow_callback(flow.callback_url, accept="text/html")
    assert "verifier" not in parse_qs(urlsplit(back.headers["location"]).query)
    assert _complete(api, tenant, flow.state).json()["connected"] is True
