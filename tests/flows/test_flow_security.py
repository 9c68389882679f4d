"""The flow refuses what RFC 9700 says to refuse, and a refusal changes nothing."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import httpx
from sqlalchemy import select

from personal_connectors.crypto.aead import associated_data
from personal_connectors.flows.state import state_hash
from personal_connectors.models import Flow, utcnow
from tests.conftest import CLIENT_ID, CLIENT_SECRET, Tenant
from tests.flows.conftest import authorize_and_consent, follow_callback, start_flow
from tests.support.oidc import OidcProvider, token_request
from tests.support.service import ServiceProcess

INVALID_STATE = "Invalid or expired state token."


def replace_query(url: str, **changes: str | None) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    for key, value in changes.items():
        if value is None:
            query.pop(key, None)
        else:
            query[key] = value
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))


def flow_row(service: ServiceProcess, state: str) -> Flow:
    async def work(session, runtime):  # type: ignore[no-untyped-def]
        return (
            await session.execute(select(Flow).where(Flow.state_hash == state_hash(state)))
        ).scalar_one()

    return service.run_db(work)


def code_verifier_of(service: ServiceProcess, state: str) -> str:
    async def work(session, runtime):  # type: ignore[no-untyped-def]
        flow = (
            await session.execute(select(Flow).where(Flow.state_hash == state_hash(state)))
        ).scalar_one()
        return runtime.sealer.open(
            flow.key_id, flow.code_verifier_ct, associated_data("flows", flow.id, "code_verifier")
        )

    return service.run_db(work)


def assert_invalid_state(response: httpx.Response) -> None:
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "VALIDATION_ERROR" and error["system_message"] == INVALID_STATE


def list_connections(api: httpx.Client, tenant: Tenant) -> list[dict[str, object]]:
    return list(api.get("", params=tenant.org, headers=tenant.headers).json())


def test_state_is_stored_only_as_a_hash(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess
) -> None:
    started = start_flow(api, tenant)
    row = flow_row(service, started["state"])
    assert started["state"] not in repr(row.__dict__)
    assert row.state_hash == state_hash(started["state"]) != started["state"]


def test_a_replayed_callback_is_refused(api: httpx.Client, tenant: Tenant) -> None:
    flow = authorize_and_consent(api, tenant)
    assert follow_callback(flow.callback_url).status_code == 200
    assert_invalid_state(follow_callback(flow.callback_url))
    assert len(list_connections(api, tenant)) == 1


def test_unknown_and_missing_state_are_refused(api: httpx.Client, tenant: Tenant) -> None:
    flow = authorize_and_consent(api, tenant)
    assert_invalid_state(
        follow_callback(replace_query(flow.callback_url, state="state_" + "A" * 43))
    )
    assert_invalid_state(follow_callback(replace_query(flow.callback_url, state=None)))
    page = follow_callback(replace_query(flow.callback_url, state="nonsense"), accept="text/html")
    assert page.status_code == 400 and "expired" in page.text
    assert list_connections(api, tenant) == []
    # The genuine callback still works afterwards: refusals changed nothing.
    assert follow_callback(flow.callback_url).status_code == 200


def test_an_expired_state_is_refused(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess
) -> None:
    flow = authorize_and_consent(api, tenant)

    async def expire(session, runtime):  # type: ignore[no-untyped-def]
        row = (
            await session.execute(select(Flow).where(Flow.state_hash == state_hash(flow.state)))
        ).scalar_one()
        row.expires_at = utcnow() - timedelta(seconds=1)
        await session.commit()

    service.run_db(expire)
    assert_invalid_state(follow_callback(flow.callback_url))
    assert_invalid_state(
        api.post(
            "/complete-oauth",
            params=tenant.org,
            headers=tenant.headers,
            json={"state_token": flow.state},
        )
    )
    assert list_connections(api, tenant) == []


def test_a_state_is_only_completed_by_the_user_and_org_that_started_it(
    api: httpx.Client, tenant: Tenant, other_tenant: Tenant, service: ServiceProcess
) -> None:
    flow = authorize_and_consent(api, tenant)
    assert follow_callback(flow.callback_url).status_code == 200
    # Another user in another organization.
    assert_invalid_state(
        api.post(
            "/complete-oauth",
            params=other_tenant.org,
            headers=other_tenant.headers,
            json={"state_token": flow.state},
        )
    )
    # The same user naming an organization they are not a member of gets 403 first.
    denied = api.post(
        "/complete-oauth",
        params=other_tenant.org,
        headers=tenant.headers,
        json={"state_token": flow.state},
    )
    assert (
        denied.status_code == 403 and denied.json()["error"]["code"] == "ORGANIZATION_ACCESS_DENIED"
    )
    assert list_connections(api, other_tenant) == []
    ok = api.post(
        "/complete-oauth",
        params=tenant.org,
        headers=tenant.headers,
        json={"state_token": flow.state},
    )
    assert ok.json()["connected"] is True


def test_an_iss_mismatch_is_refused_before_any_code_exchange(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess, oidc: OidcProvider
) -> None:
    flow = authorize_and_consent(api, tenant)
    verifier = code_verifier_of(service, flow.state)
    forged = replace_query(flow.callback_url, iss="https://attacker.example")
    response = follow_callback(forged)
    assert response.status_code == 400
    assert response.json()["error"]["details"]["error"] == "issuer_mismatch"
    assert list_connections(api, tenant) == []
    # The code was never sent to the token endpoint: it is still redeemable at the provider.
    exchanged = token_request(
        oidc,
        CLIENT_ID,
        CLIENT_SECRET,
        {
            "grant_type": "authorization_code",
            "code": flow.query["code"],
            "code_verifier": verifier,
            "redirect_uri": f"{service.base_url}/v1/personal-connectors/callback",
        },
    )
    assert exchanged.status_code == 200, exchanged.text


def test_a_missing_iss_is_refused_when_the_provider_advertises_it(
    api: httpx.Client, tenant: Tenant, oidc: OidcProvider
) -> None:
    assert oidc.metadata["authorization_response_iss_parameter_supported"] is True
    flow = authorize_and_consent(api, tenant)
    response = follow_callback(replace_query(flow.callback_url, iss=None))
    assert response.status_code == 400
    assert response.json()["error"]["details"]["error"] == "issuer_mismatch"


def test_return_url_on_a_foreign_origin_is_refused(api: httpx.Client, tenant: Tenant) -> None:
    for url in (
        "https://evil.example/steal",
        "https://app.example.test.evil.example/",
        "javascript:alert(1)",
        "//evil.example/x",
    ):
        response = api.post(
            "/authorize",
            params=tenant.org,
            headers=tenant.headers,
            json={"connector_type": "local-oidc", "return_url": url},
        )
        assert response.status_code == 400, url
        assert response.json()["error"]["details"]["fields"] == ["return_url"]


def test_unknown_connector_and_unconfigured_connector(api: httpx.Client, tenant: Tenant) -> None:
    unknown = api.post(
        "/authorize", params=tenant.org, headers=tenant.headers, json={"connector_type": "nope"}
    )
    assert unknown.status_code == 400
    assert unknown.json()["error"]["details"]["fields"] == ["connector_type"]
    alias = api.post(
        "/authorize", params=tenant.org, headers=tenant.headers, json={"app_key": "local-oidc"}
    )
    assert alias.status_code == 200


def test_a_foreign_connection_is_not_found(
    api: httpx.Client, tenant: Tenant, other_tenant: Tenant
) -> None:
    flow = authorize_and_consent(api, tenant)
    connection_id = follow_callback(flow.callback_url).json()["data"]["connection_id"]
    for method in ("GET", "DELETE"):
        response = api.request(
            method, f"/{connection_id}", params=other_tenant.org, headers=other_tenant.headers
        )
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "RESOURCE_NOT_FOUND"
    unknown = api.get("/conn_" + "0" * 32, params=tenant.org, headers=tenant.headers)
    assert unknown.status_code == 404
    assert (
        unknown.json()["error"]["system_message"]
        == api.get(
            f"/{connection_id}", params=other_tenant.org, headers=other_tenant.headers
        ).json()["error"]["system_message"]
    )
    assert (
        api.get(f"/{connection_id}", params=tenant.org, headers=tenant.headers).status_code == 200
    )
