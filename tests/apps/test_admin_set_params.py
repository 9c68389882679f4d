"""Integration params that choose where the service connects (an issuer's host) are set by an
owner or admin on the organization's OAuth app, never by a member in ``POST /authorize``: a
member could otherwise point discovery at their own server and receive the organization's client
id and secret there."""

from __future__ import annotations

import os
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest

from personal_connectors.identity.service import IdentityService
from personal_connectors.models import Role
from tests.conftest import CLIENT_ID, CLIENT_SECRET, TENANT_OIDC_KEY, Tenant, make_tenant
from tests.support.envelope import is_envelope
from tests.support.loopback import LoopbackServer, QuietHandler
from tests.support.oidc import OidcProvider
from tests.support.service import ServiceProcess


def member_of(service: ServiceProcess, owner: Tenant) -> Tenant:
    async def work(session, runtime):  # type: ignore[no-untyped-def]
        identities = IdentityService(session)
        user = await identities.create_user(
            f"{os.urandom(6).hex()}@example.test", owner.organization_id, role=Role.MEMBER
        )
        issued = await identities.create_api_key(user.id)
        return Tenant(owner.organization_id, user.id, issued.plaintext, issued.key.id)

    return service.run_db(work)


@pytest.fixture
def attacker() -> Iterator[tuple[str, list[str]]]:
    """A server a member controls: ``(port, paths it was asked for)``."""
    asked: list[str] = []

    class Handler(QuietHandler):
        def do_GET(self) -> None:
            asked.append(self.path)
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_POST = do_GET

    server = LoopbackServer(Handler)
    yield server.base_url.rsplit(":", 1)[1], asked
    server.close()


def set_app(api: httpx.Client, owner: Tenant, **params: str) -> httpx.Response:
    return api.put(
        f"/apps/{TENANT_OIDC_KEY}",
        params=owner.org,
        headers=owner.headers,
        json={
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            **({"integration_params": params} if params else {}),
        },
    )


def authorize(api: httpx.Client, caller: Tenant, **params: str) -> httpx.Response:
    body: dict[str, object] = {"connector_type": TENANT_OIDC_KEY}
    if params:
        body["integration_params"] = params
    return api.post("/authorize", params=caller.org, headers=caller.headers, json=body)


def test_a_member_choosing_the_issuer_is_refused_before_anything_is_sent(
    api: httpx.Client,
    service: ServiceProcess,
    oidc: OidcProvider,
    attacker: tuple[str, list[str]],
) -> None:
    owner = make_tenant(service)
    member = member_of(service, owner)
    assert set_app(api, owner, issuer_port=str(urlsplit(oidc.issuer).port)).status_code == 200
    evil_port, asked = attacker

    refused = authorize(api, member, issuer_port=evil_port)

    assert refused.status_code == 400 and is_envelope(refused.json(), 400), refused.text
    error = refused.json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert f"PUT /apps/{TENANT_OIDC_KEY}" in error["system_message"]
    assert error["details"]["fields"] == ["integration_params.issuer_port"]
    assert asked == []  # no discovery, no PAR, no client secret: nothing reached the attacker
    assert CLIENT_SECRET not in refused.text


def test_the_issuer_an_admin_sets_on_the_app_is_the_one_members_connect_to(
    api: httpx.Client, service: ServiceProcess, oidc: OidcProvider
) -> None:
    owner = make_tenant(service)
    member = member_of(service, owner)

    unset = set_app(api, owner)
    assert unset.status_code == 200 and unset.json()["integration_params"] == {}
    not_configured = authorize(api, member)
    assert not_configured.status_code == 400
    assert not_configured.json()["error"]["code"] == "CONNECTOR_NOT_CONFIGURED"
    assert not_configured.json()["error"]["system_message"] == (
        f"Not configured yet: integration_params.issuer_port of {TENANT_OIDC_KEY} is set by an "
        f"owner or admin on the organization's app: PUT /apps/{TENANT_OIDC_KEY} with "
        f"integration_params (or `connectors apps set {TENANT_OIDC_KEY} --param "
        "issuer_port=VALUE`)."
    )

    issuer_port = str(urlsplit(oidc.issuer).port)
    configured = set_app(api, owner, issuer_port=issuer_port)
    assert configured.status_code == 200
    assert configured.json()["integration_params"] == {"issuer_port": issuer_port}

    started = authorize(api, member)
    assert started.status_code == 200, started.text
    assert started.json()["authorization_url"].startswith(oidc.metadata["authorization_endpoint"])


def test_only_owners_and_admins_set_app_params_and_only_admin_params(
    api: httpx.Client, service: ServiceProcess
) -> None:
    owner = make_tenant(service)
    member = member_of(service, owner)
    assert set_app(api, member, issuer_port="1").status_code == 403

    wrong = api.put(
        "/apps/zendesk",
        params=owner.org,
        headers=owner.headers,
        json={"client_id": "c", "client_secret": "s", "integration_params": {"subdomain": "acme"}},
    )
    assert wrong.status_code == 400
    assert "POST /authorize" in wrong.json()["error"]["system_message"]
    bad = set_app(api, owner, issuer_port="80/evil")
    assert bad.status_code == 400
    assert bad.json()["error"]["details"]["fields"] == ["integration_params.issuer_port"]
