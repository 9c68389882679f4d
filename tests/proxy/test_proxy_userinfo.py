"""The real OpenID provider as a second upstream: its userinfo (``/me``) called through the
proxy with the connection's token answers the account's claims, and a token the provider no
longer knows is cured by a refresh at the provider and one retry (SPEC §9)."""

from __future__ import annotations

import os

import httpx

from personal_connectors.crypto.aead import associated_data
from personal_connectors.models import Connection
from personal_connectors.tokens.vault import TABLE
from tests.conftest import Tenant
from tests.proxy.conftest import connect_to, proxied, refreshes
from tests.support import web
from tests.support.db import stored_tokens
from tests.support.oidc import OidcProvider
from tests.support.service import ServiceProcess
from tests.support.upstream_api import PROXY_USERINFO_KEY


def claims_of(login: str) -> dict[str, object]:
    """What tests/support/oidc_provider answers for an account (openid, email, profile)."""
    return {
        "sub": login,
        "email": f"{login}@example.test",
        "email_verified": True,
        "name": login.capitalize(),
    }


def replace_access_token(service: ServiceProcess, connection_id: str, token: str) -> None:
    """Store ``token`` as the connection's access token, sealed as the service seals one."""

    async def work(session, runtime):  # type: ignore[no-untyped-def]
        connection = await session.get(Connection, connection_id)
        aad = associated_data(TABLE, connection_id, "access_token")
        connection.access_token_ct = runtime.sealer.seal(token, aad)
        await session.commit()

    service.run_db(work)


def test_the_providers_userinfo_answers_the_accounts_claims_through_the_proxy(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess, oidc: OidcProvider
) -> None:
    login = f"user-{os.urandom(4).hex()}"
    connection_id = connect_to(api, tenant, PROXY_USERINFO_KEY, login=login)
    userinfo_path = oidc.metadata["userinfo_endpoint"].removeprefix(oidc.issuer + "/")
    assert userinfo_path == "me"

    response = proxied(api, tenant, connection_id, userinfo_path)

    assert response.status_code == 200, response.text
    assert response.headers["x-connectors-proxy"] == "upstream"
    assert response.json() == claims_of(login)
    # Without the proxy's credentials the provider refuses the same call.
    assert web.get(oidc.metadata["userinfo_endpoint"]).status_code in (400, 401)


def test_a_token_the_provider_rejects_is_refreshed_there_and_the_call_retried(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess, oidc: OidcProvider
) -> None:
    login = f"user-{os.urandom(4).hex()}"
    connection_id = connect_to(api, tenant, PROXY_USERINFO_KEY, login=login)
    unknown = f"unknown-{os.urandom(16).hex()}"
    replace_access_token(service, connection_id, unknown)

    response = proxied(api, tenant, connection_id, "me")

    assert response.status_code == 200, response.text
    assert response.json() == claims_of(login)
    new, _ = stored_tokens(service, connection_id)
    assert new not in (None, unknown)
    assert refreshes(service, connection_id) == 1
