"""RFC 8693 token exchange (SPEC §8) against a running service: JWTs of the real OpenID provider
(its ID tokens) and of a second issuer made here are exchanged by an exchange key for an end
user's provider token or for a pct_ token that acts for that end user only; every failed check
is an RFC 6749 error, and a rotated signing key is fetched once."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from joserfc.jwk import RSAKey

from personal_connectors.models import Connection, ConnectionStatus, KeyKind
from personal_connectors.oauth.rfc8693 import GRANT_TYPE, ID_TOKEN_TYPE, JWT_TOKEN_TYPE
from tests.conftest import CLIENT_ID, CLIENT_SECRET, PROVIDER_KEY, Tenant
from tests.flows.conftest import connect
from tests.support.db import stored_tokens
from tests.support.issuer import TestIssuer
from tests.support.oidc import OidcProvider, token_request
from tests.support.platform import OrganizationKey, make_organization_key
from tests.support.service import ServiceProcess


@pytest.fixture
def issuer() -> Iterator[TestIssuer]:
    test_issuer = TestIssuer()
    yield test_issuer
    test_issuer.close()


def trust(api: httpx.Client, tenant: Tenant, **body: Any) -> None:
    response = api.post("/trusted-issuers", params=tenant.org, headers=tenant.headers, json=body)
    assert response.status_code == 201, response.text


def exchange(
    api: httpx.Client,
    key: OrganizationKey | None,
    subject_token: str,
    *,
    token_type: str = JWT_TOKEN_TYPE,
    headers: dict[str, str] | None = None,
    **target: str,
) -> httpx.Response:
    form = {
        "grant_type": GRANT_TYPE,
        "subject_token": subject_token,
        "subject_token_type": token_type,
    }
    return api.post(
        "/oauth/token",
        data={**form, **target},
        headers=headers if headers is not None else (key.headers if key else {}),
    )


def refused(response: httpx.Response, error: str, status: int = 400) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "error_description"} and body["error"] == error
    assert response.headers["cache-control"] == "no-store"
    return str(body["error_description"])


def id_token_of(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess, oidc: OidcProvider, login: str
) -> str:
    """An ID token the real provider signs for ``login``: from a refresh of a member's grant."""
    connection = connect(api, tenant, login=login)
    refresh_token = stored_tokens(service, connection)[1]
    assert refresh_token is not None
    answer = token_request(
        oidc,
        CLIENT_ID,
        CLIENT_SECRET,
        {"grant_type": "refresh_token", "refresh_token": refresh_token},
    )
    assert answer.status_code == 200, answer.text
    return str(answer.json()["id_token"])


def test_the_real_providers_id_token_gets_the_end_users_token_and_a_pct_token(
    api: httpx.Client, service: ServiceProcess, tenant: Tenant, oidc: OidcProvider
) -> None:
    trust(api, tenant, issuer=oidc.issuer, audience=CLIENT_ID)  # keys from its discovery
    exchanger = make_organization_key(service, tenant.organization_id, KeyKind.EXCHANGE)
    platform = make_organization_key(service, tenant.organization_id)
    alice = platform.acting_for("alice")
    alices = connect(api, alice, login="alice")
    bobs = connect(api, platform.acting_for("bob"), login="bob")
    id_token = id_token_of(api, tenant, service, oidc, "alice")

    direct = api.post(f"/{alices}/token", params=alice.org, headers=platform.headers).json()
    by_resource = exchange(api, exchanger, id_token, token_type=ID_TOKEN_TYPE, resource=alices)
    assert by_resource.status_code == 200, by_resource.text
    body = by_resource.json()
    assert body["access_token"] == direct["access_token"]
    assert body["issued_token_type"] == "urn:ietf:params:oauth:token-type:access_token"
    assert body["token_type"] == "Bearer" and 0 < body["expires_in"] <= 3600
    assert by_resource.headers["cache-control"] == "no-store"
    url = f"{service.api}/{alices}"
    assert (
        exchange(api, exchanger, id_token, resource=url).json()["access_token"]
        == body["access_token"]
    )
    by_app = exchange(api, exchanger, id_token, audience=PROVIDER_KEY)
    assert by_app.json()["access_token"] == body["access_token"]
    refused(exchange(api, exchanger, id_token, resource=bobs), "invalid_target")  # bob's

    pct = exchange(api, exchanger, id_token, audience="personal-connectors").json()
    assert pct["access_token"].startswith("pct_") and pct["expires_in"] == 300
    as_alice = {"Authorization": f"Bearer {pct['access_token']}"}
    listed = api.get("/", headers=as_alice)
    assert listed.status_code == 200 and [c["id"] for c in listed.json()] == [alices]
    token = api.post(f"/{alices}/token", headers=as_alice)
    assert token.status_code == 200 and token.json()["access_token"] == body["access_token"]
    assert api.post(f"/{bobs}/token", headers=as_alice).status_code == 404
    assert api.get(f"/{bobs}", headers=as_alice).status_code == 404
    other = api.get("/", params={"end_user_id": "bob"}, headers=as_alice)
    assert other.status_code == 403  # bound to alice
    # It reads and hands out tokens; it changes nothing and manages no one.
    assert api.delete(f"/{alices}", headers=as_alice).status_code == 403
    assert (
        api.post("/authorize", headers=as_alice, json={"connector_type": PROVIDER_KEY}).status_code
        == 403
    )
    assert api.get("/end-users", headers=as_alice).status_code == 403
    assert api.get("/api-keys", params=tenant.org, headers=as_alice).status_code == 403
    # Deleting the key that exchanged it ends the pct_ token at once.
    deleted = api.delete(
        f"/api-keys/{exchanger.api_key_id}", params=tenant.org, headers=tenant.headers
    )
    assert deleted.status_code == 204
    assert api.get("/", headers=as_alice).status_code == 401


def forge(header: dict[str, object], payload: dict[str, object], sign: Any) -> str:
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    return f"{signing_input}.{b64(sign(signing_input.encode()))}"


def test_every_check_of_a_second_issuers_jwt_refuses_what_fails_it(
    api: httpx.Client, service: ServiceProcess, tenant: Tenant, issuer: TestIssuer
) -> None:
    trust(api, tenant, issuer=issuer.issuer, audience="platform", jwks_uri=issuer.jwks_uri)
    exchanger = make_organization_key(service, tenant.organization_id, KeyKind.EXCHANGE)
    platform = make_organization_key(service, tenant.organization_id)
    bobs = connect(api, platform.acting_for("bob"), login="bob")

    assert exchange(api, exchanger, issuer.sign("bob"), resource=bobs).status_code == 200
    stranger = RSAKey.generate_key(2048, parameters={"kid": "k1"})
    refused(
        exchange(api, exchanger, issuer.sign("bob", key=stranger), resource=bobs), "invalid_grant"
    )
    now = int(time.time())
    claims = {"iss": issuer.issuer, "sub": "bob", "aud": "platform", "exp": now + 300}
    unsigned = forge({"alg": "none", "kid": "k1"}, claims, lambda _: b"")
    refused(exchange(api, exchanger, unsigned, resource=bobs), "invalid_grant")
    public_pem = issuer.keys[0].as_pem(private=False)
    hs256 = forge(
        {"alg": "HS256", "kid": "k1"},
        claims,
        lambda data: hmac.new(public_pem, data, hashlib.sha256).digest(),
    )
    refused(exchange(api, exchanger, hs256, resource=bobs), "invalid_grant")
    refused(
        exchange(api, exchanger, issuer.sign("bob", lifetime=-120), resource=bobs), "invalid_grant"
    )
    refused(
        exchange(api, exchanger, issuer.sign("bob", audience="other"), resource=bobs),
        "invalid_grant",
    )
    untrusted = issuer.sign("bob", iss="https://idp.example.test")
    assert "not trusted" in refused(
        exchange(api, exchanger, untrusted, resource=bobs), "invalid_grant"
    )
    refused(exchange(api, exchanger, issuer.sign("carol"), audience=PROVIDER_KEY), "invalid_target")
    refused(exchange(api, exchanger, issuer.sign("bob"), audience="github"), "invalid_target")

    # Client authentication: none, a user key, a service key, HTTP Basic with the key's id.
    refused(exchange(api, None, issuer.sign("bob"), resource=bobs), "invalid_client", 401)
    user_key = OrganizationKey(tenant.organization_id, tenant.api_key, tenant.api_key_id)
    refused(exchange(api, user_key, issuer.sign("bob"), resource=bobs), "unauthorized_client")
    assert exchange(api, platform, issuer.sign("bob"), resource=bobs).status_code == 200
    basic = base64.b64encode(f"{exchanger.api_key_id}:{exchanger.api_key}".encode()).decode()
    by_basic = exchange(
        api, None, issuer.sign("bob"), headers={"Authorization": f"Basic {basic}"}, resource=bobs
    )
    assert by_basic.status_code == 200
    wrong_id = base64.b64encode(f"key_other:{exchanger.api_key}".encode()).decode()
    answer = exchange(
        api, None, issuer.sign("bob"), headers={"Authorization": f"Basic {wrong_id}"}, resource=bobs
    )
    refused(answer, "invalid_client", 401)
    assert answer.headers["www-authenticate"].startswith("Basic")

    # Malformed requests.
    refused(exchange(api, exchanger, issuer.sign("bob")), "invalid_request")  # no target
    refused(exchange(api, exchanger, issuer.sign("bob"), token_type="saml"), "invalid_request")
    wrong_grant = api.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        headers=exchanger.headers,
    )
    refused(wrong_grant, "unsupported_grant_type")
    # An exchange key reaches nothing else.
    assert api.get("/", params=tenant.org, headers=exchanger.headers).status_code == 403


def test_a_rotated_signing_key_is_fetched_once(
    api: httpx.Client, service: ServiceProcess, tenant: Tenant, issuer: TestIssuer
) -> None:
    trust(api, tenant, issuer=issuer.issuer, audience="platform")  # keys from its discovery
    exchanger = make_organization_key(service, tenant.organization_id, KeyKind.EXCHANGE)
    bobs = connect(
        api, make_organization_key(service, tenant.organization_id).acting_for("bob"), login="bob"
    )
    assert exchange(api, exchanger, issuer.sign("bob"), resource=bobs).status_code == 200
    fetched = issuer.jwks_fetches
    issuer.rotate()
    for _ in range(3):
        assert exchange(api, exchanger, issuer.sign("bob"), resource=bobs).status_code == 200
    assert issuer.jwks_fetches == fetched + 1


def test_a_connection_that_needs_reauthorization_is_invalid_grant(
    api: httpx.Client, service: ServiceProcess, tenant: Tenant, issuer: TestIssuer
) -> None:
    trust(api, tenant, issuer=issuer.issuer, audience="platform", jwks_uri=issuer.jwks_uri)
    exchanger = make_organization_key(service, tenant.organization_id, KeyKind.EXCHANGE)
    platform = make_organization_key(service, tenant.organization_id)
    bobs = connect(api, platform.acting_for("bob"), login="bob")

    async def needs_reauth(session, runtime):  # type: ignore[no-untyped-def]
        connection = await session.get(Connection, bobs)
        connection.status = ConnectionStatus.NEEDS_REAUTH
        connection.status_reason = "invalid_grant: revoked"
        await session.commit()

    service.run_db(needs_reauth)
    answer = exchange(api, exchanger, issuer.sign("bob"), resource=bobs)
    assert "connected again" in refused(answer, "invalid_grant")
