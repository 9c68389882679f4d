"""``oauth2_client_credentials`` against a real OpenID provider (panva's oidc-provider with its
client credentials grant on; tests/support/minting_servers.py): the stored client id and
secret mint the token, a resource that asks the provider (RFC 7662 introspection) accepts it,
and an expired token is minted again once, however many callers ask at the same moment."""

from __future__ import annotations

import threading

import httpx

from tests.conftest import Tenant
from tests.credentials.test_credentials import error, listed, submit, token
from tests.support import web
from tests.support.db import connection_row, event_types, expire_token, stored_tokens
from tests.support.minting_servers import (
    MACHINE_CLIENT_ID,
    OIDC_CC_KEY,
    OIDC_CC_NARROWED_KEY,
    OIDC_CC_UNSCOPED_KEY,
    SCOPE,
    MachineSecrets,
    MintingServers,
)
from tests.support.oidc import OidcProvider
from tests.support.service import ServiceProcess

CALLERS = 10


def introspected(servers: MintingServers, access_token: str) -> httpx.Response:
    """The protected resource's answer for ``access_token`` (it asks the provider)."""
    return web.get(
        f"{servers.url}/oidc/me", headers={"Authorization": f"Bearer {access_token}"}, timeout=10
    )


def fields(machine: MachineSecrets) -> dict[str, str]:
    return {"app_id": MACHINE_CLIENT_ID, "app_secret": machine.client_secret}


def test_a_machine_client_connects_and_its_token_is_the_providers(
    api: httpx.Client,
    tenant: Tenant,
    service: ServiceProcess,
    machine_oidc: OidcProvider,
    machine_secrets: MachineSecrets,
    minting_servers: MintingServers,
) -> None:
    before = machine_oidc.grants_issued().get("client_credentials", 0)
    response = submit(api, tenant, OIDC_CC_KEY, fields(machine_secrets))
    assert response.status_code == 201, response.text
    assert machine_secrets.client_secret not in response.text
    connection = response.json()
    assert connection["auth_mode"] == "oauth2_client_credentials"
    assert connection["account_id"] == MACHINE_CLIENT_ID  # from the resource, from the provider
    assert connection["scopes"] == [SCOPE] and connection["expires_at"] is not None
    assert connection["credential_fields"] == ["app_id", "app_secret"]
    # One token minted: the one the check and identity calls used, now stored.
    assert machine_oidc.grants_issued()["client_credentials"] == before + 1

    answer = token(api, tenant, connection["id"])
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["auth_mode"] == "oauth2_client_credentials" and body["credentials"] is None
    assert body["token_type"] == "Bearer" and body["scopes"] == [SCOPE]
    assert body["expires_at"] is not None and body["app_key"] == OIDC_CC_KEY
    assert machine_secrets.client_secret not in answer.text
    # The provider itself says the token is live, issued to the machine client for the scope.
    checked = introspected(minting_servers, body["access_token"])
    assert checked.status_code == 200, checked.text
    assert checked.json() == {"id": MACHINE_CLIENT_ID, "scope": SCOPE}
    assert machine_oidc.grants_issued()["client_credentials"] == before + 1  # handed, not minted

    # The connection's /test makes the entry's check call with the stored token.
    tested = api.post(f"/{connection['id']}/test", params=tenant.org, headers=tenant.headers)
    assert tested.status_code == 200 and tested.json()["success"] is True, tested.text


def test_a_wrong_secret_is_rejected_by_the_provider_and_nothing_is_stored(
    api: httpx.Client,
    tenant: Tenant,
    machine_oidc: OidcProvider,
    machine_secrets: MachineSecrets,
) -> None:
    before = machine_oidc.grants_issued().get("client_credentials", 0)
    wrong = {**fields(machine_secrets), "app_secret": "mc_not-the-secret-0123456789abcdef"}
    refused = error(submit(api, tenant, OIDC_CC_KEY, wrong), 400, "CREDENTIALS_REJECTED")
    assert refused["details"]["error"] == "invalid_client"  # the provider's own answer
    assert wrong["app_secret"] not in str(refused)
    unknown = {"app_id": "no-such-client", "app_secret": machine_secrets.client_secret}
    error(submit(api, tenant, OIDC_CC_KEY, unknown), 400, "CREDENTIALS_REJECTED")
    assert listed(api, tenant, OIDC_CC_KEY) == []
    assert machine_oidc.grants_issued().get("client_credentials", 0) == before


def test_an_expired_token_is_minted_again_once_for_ten_concurrent_callers(
    api: httpx.Client,
    tenant: Tenant,
    service: ServiceProcess,
    machine_oidc: OidcProvider,
    machine_secrets: MachineSecrets,
    minting_servers: MintingServers,
) -> None:
    response = submit(api, tenant, OIDC_CC_KEY, fields(machine_secrets))
    assert response.status_code == 201, response.text
    connection_id = response.json()["id"]
    old_token, refresh_token = stored_tokens(service, connection_id)
    assert old_token is not None and refresh_token is None  # nothing to refresh with: re-mint
    expire_token(service, connection_id)
    before = machine_oidc.grants_issued()["client_credentials"]

    start = threading.Barrier(CALLERS)
    answers: list[httpx.Response] = []
    lock = threading.Lock()

    def call() -> None:
        with web.client(base_url=service.api, timeout=30) as client:
            start.wait()
            answer = token(client, tenant, connection_id)
        with lock:
            answers.append(answer)

    threads = [threading.Thread(target=call) for _ in range(CALLERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(answers) == CALLERS
    assert all(answer.status_code == 200 for answer in answers), [a.text for a in answers]
    handed = {answer.json()["access_token"] for answer in answers}
    # Exactly one new client_credentials grant at the provider, and every caller got its token.
    assert machine_oidc.grants_issued()["client_credentials"] == before + 1
    assert len(handed) == 1 and old_token not in handed
    [new_token] = handed
    assert stored_tokens(service, connection_id)[0] == new_token
    assert introspected(minting_servers, new_token).json()["id"] == MACHINE_CLIENT_ID
    assert event_types(service, connection_id) == ["connection.created", "connection.refreshed"]
    # Fresh again: the next caller is handed the same token, with no grant.
    assert token(api, tenant, connection_id).json()["access_token"] == new_token
    assert machine_oidc.grants_issued()["client_credentials"] == before + 1


def test_the_granted_scope_is_the_providers_answer_at_connect_and_at_every_mint(
    api: httpx.Client,
    tenant: Tenant,
    service: ServiceProcess,
    machine_secrets: MachineSecrets,
    minting_servers: MintingServers,
) -> None:
    """RFC 6749 §5.1: the token answer's `scope` is what was granted; the provider grants the
    scope it knows of the two asked for and says so, and that is what the connection records
    and hands out, when connected and when minted again."""
    response = submit(api, tenant, OIDC_CC_NARROWED_KEY, fields(machine_secrets))
    assert response.status_code == 201, response.text
    connection = response.json()
    assert connection["scopes"] == [SCOPE]  # asked for it and "unknown.scope"
    body = token(api, tenant, connection["id"]).json()
    assert body["scopes"] == [SCOPE]
    assert introspected(minting_servers, body["access_token"]).json()["scope"] == SCOPE

    expire_token(service, connection["id"])
    again = token(api, tenant, connection["id"]).json()
    assert again["access_token"] != body["access_token"] and again["scopes"] == [SCOPE]
    assert connection_row(service, connection["id"]).scopes == [SCOPE]


def test_a_scope_the_answer_omits_is_the_one_requested_even_if_none(
    api: httpx.Client,
    tenant: Tenant,
    service: ServiceProcess,
    machine_secrets: MachineSecrets,
    minting_servers: MintingServers,
) -> None:
    """Asked for no scope, the provider grants none and sends no `scope`: RFC 6749 §5.1 reads
    that as the scope requested, so the connection records none — also when a mint replaces a
    token that had one (a record from an entry that asked for a scope before)."""
    response = submit(api, tenant, OIDC_CC_UNSCOPED_KEY, fields(machine_secrets))
    assert response.status_code == 201, response.text
    connection = response.json()
    assert connection["scopes"] == []
    first = token(api, tenant, connection["id"]).json()
    assert first["scopes"] == []
    assert introspected(minting_servers, first["access_token"]).json()["scope"] is None

    expire_token(service, connection["id"], scopes=[SCOPE])  # recorded under an earlier entry
    again = token(api, tenant, connection["id"]).json()
    assert again["access_token"] != first["access_token"]
    assert introspected(minting_servers, again["access_token"]).json()["scope"] is None
    assert again["scopes"] == []  # the new token's: none, not the old record's
    assert connection_row(service, connection["id"]).scopes == []
