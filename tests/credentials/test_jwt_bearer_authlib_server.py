"""``jwt_bearer`` against a real RFC 7523 authorization server built from Authlib's
``AuthorizationServer`` and ``JWTBearerGrant`` (tests/support/minting_servers.py): the
assertion the service signs with the stored private key is verified there (signature by the
registered public key, ``iss``, ``sub``, ``aud``, ``exp``); the token it issues opens its
protected resource; an expired token is minted again once; another key is refused."""

from __future__ import annotations

import threading

import httpx
from joserfc.jwk import RSAKey

from tests.conftest import Tenant
from tests.credentials.test_credentials import error, listed, submit, token
from tests.support import outputs, web
from tests.support.db import event_types, expire_token, stored_tokens
from tests.support.minting_servers import RFC7523_KEY, SCOPE, SERVICE_ACCOUNT, MintingServers
from tests.support.service import ServiceProcess

CALLERS = 10


def fields(servers: MintingServers, private_key: str | None = None) -> dict[str, str]:
    return {"client_email": SERVICE_ACCOUNT, "private_key": private_key or servers.private_key}


def resource(servers: MintingServers, access_token: str) -> httpx.Response:
    return web.get(
        f"{servers.url}/rfc7523/me",
        headers={"Authorization": f"Bearer {access_token}"},
        timeout=10,
    )


def test_a_service_account_key_connects_and_mints_tokens_the_server_issued(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess, minting_servers: MintingServers
) -> None:
    before = minting_servers.rfc7523_minted
    response = submit(api, tenant, RFC7523_KEY, fields(minting_servers))
    assert response.status_code == 201, response.text
    assert "PRIVATE KEY" not in response.text
    connection = response.json()
    assert connection["auth_mode"] == "jwt_bearer"
    assert connection["account_id"] == SERVICE_ACCOUNT  # the subject the server authenticated
    assert connection["scopes"] == [SCOPE] and connection["expires_at"] is not None
    assert minting_servers.rfc7523_minted == before + 1

    answer = token(api, tenant, connection["id"])
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["auth_mode"] == "jwt_bearer" and body["credentials"] is None
    assert body["token_type"] == "Bearer" and body["scopes"] == [SCOPE]
    assert "PRIVATE KEY" not in answer.text
    assert minting_servers.rfc7523_subject(body["access_token"]) == SERVICE_ACCOUNT
    opened = resource(minting_servers, body["access_token"])
    assert opened.status_code == 200 and opened.json()["id"] == SERVICE_ACCOUNT
    assert resource(minting_servers, "not-a-token-0123456789").status_code == 401
    assert minting_servers.rfc7523_minted == before + 1  # handed out, not minted again


def test_an_expired_token_is_minted_again_once_with_a_fresh_assertion(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess, minting_servers: MintingServers
) -> None:
    response = submit(api, tenant, RFC7523_KEY, fields(minting_servers))
    assert response.status_code == 201, response.text
    connection_id = response.json()["id"]
    old_token, _ = stored_tokens(service, connection_id)
    expire_token(service, connection_id)
    before = minting_servers.rfc7523_minted
    start = threading.Barrier(CALLERS)
    handed: list[httpx.Response] = []
    lock = threading.Lock()

    def call() -> None:
        with web.client(base_url=service.api, timeout=30) as client:
            start.wait()
            answer = token(client, tenant, connection_id)
        with lock:
            handed.append(answer)

    threads = [threading.Thread(target=call) for _ in range(CALLERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert all(answer.status_code == 200 for answer in handed), [a.text for a in handed]
    tokens = {answer.json()["access_token"] for answer in handed}
    assert len(handed) == CALLERS and len(tokens) == 1 and old_token not in tokens
    assert minting_servers.rfc7523_minted == before + 1
    [new_token] = tokens
    assert resource(minting_servers, new_token).json()["id"] == SERVICE_ACCOUNT
    assert event_types(service, connection_id)[-1] == "connection.refreshed"
    assert event_types(service, connection_id).count("connection.refreshed") == 1
    assert token(api, tenant, connection_id).json()["access_token"] == new_token
    assert minting_servers.rfc7523_minted == before + 1


def test_a_key_the_server_does_not_know_is_rejected_and_nothing_is_stored(
    api: httpx.Client, tenant: Tenant, minting_servers: MintingServers
) -> None:
    other = RSAKey.generate_key(2048).as_pem(private=True).decode()
    outputs.RECORD.add_secret(other, "private_key")
    for line in other.splitlines():
        if not line.startswith("-----"):
            outputs.RECORD.add_secret(line, "private_key")
    before = minting_servers.rfc7523_minted
    refused = error(
        submit(api, tenant, RFC7523_KEY, fields(minting_servers, other)),
        400,
        "CREDENTIALS_REJECTED",
    )
    assert refused["details"]["error"] == "invalid_grant"  # the signature did not verify
    assert "PRIVATE KEY" not in str(refused)
    # The right key under an account the server never registered: no client for that iss.
    stranger = {**fields(minting_servers), "client_email": "someone@rfc7523.example"}
    refused = error(submit(api, tenant, RFC7523_KEY, stranger), 400, "CREDENTIALS_REJECTED")
    assert refused["details"]["error"] == "invalid_grant"
    assert listed(api, tenant, RFC7523_KEY) == []
    assert minting_servers.rfc7523_minted == before
