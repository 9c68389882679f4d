"""Pushed authorization requests (RFC 9126) against a real provider: the parameters go to the
provider's PAR endpoint, the browser carries only client_id and request_uri."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.conftest import CLIENT_ID, Tenant
from tests.flows.conftest import authorize_and_consent, follow_callback
from tests.support import web
from tests.support.db import connection_row
from tests.support.grants import DEVICE_KEY, PAR_KEY, GrantProviders
from tests.support.oidc import OidcProvider
from tests.support.service import ServiceProcess


def provider_of(grant_providers: GrantProviders, key: str) -> OidcProvider:
    return grant_providers.par if key == PAR_KEY else grant_providers.device


def test_the_provider_refuses_an_authorization_request_that_was_not_pushed(
    grant_providers: GrantProviders, service: ServiceProcess
) -> None:
    """The premise of the next test: without PAR, par-oidc would not even show a login."""
    provider = grant_providers.par
    assert provider.metadata["require_pushed_authorization_requests"] is True
    response = web.get(
        provider.metadata["authorization_endpoint"],
        params={
            "client_id": CLIENT_ID,
            "response_type": "code",
            "scope": "openid",
            "redirect_uri": f"{service.api}/callback",
            "state": "s",
            "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
            "code_challenge_method": "S256",
        },
    )
    # The refusal goes back to the (registered) redirect URI as an OAuth error.
    assert response.status_code == 303
    refused = parse_qs(urlsplit(response.headers["location"]).query)
    assert refused["error"] == ["invalid_request"]
    assert "pushed authorization request" in refused["error_description"][0].lower()


@pytest.mark.parametrize("key", [PAR_KEY, DEVICE_KEY], ids=["required", "offered"])
def test_authorize_pushes_the_request_and_the_flow_connects(
    key: str,
    api: httpx.Client,
    tenant: Tenant,
    service: ServiceProcess,
    grant_providers: GrantProviders,
) -> None:
    provider = provider_of(grant_providers, key)
    flow = authorize_and_consent(api, tenant, connector_type=key, login="dave")
    url = urlsplit(flow.authorize["authorization_url"])
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    assert f"{url.scheme}://{url.netloc}{url.path}" == provider.metadata["authorization_endpoint"]
    # Nothing but the reference travels through the browser: no state, scope, PKCE challenge.
    assert set(query) == {"client_id", "request_uri"}
    assert query["client_id"] == CLIENT_ID
    assert query["request_uri"].startswith("urn:ietf:params:oauth:request_uri:")

    # The pushed parameters came back to us: state, iss, and a code the PKCE verifier redeems.
    assert flow.query["state"] == flow.state
    assert flow.query["iss"] == provider.issuer
    callback = follow_callback(flow.callback_url)
    assert callback.status_code == 200, callback.text
    connection_id = callback.json()["data"]["connection_id"]
    row = connection_row(service, connection_id)
    assert row.app_key == key and row.account_id == "dave"
    assert "offline_access" in row.scopes  # prompt=consent was pushed too

    # A request_uri is single-use: replaying the URL does not start a second authorization.
    replay = web.get(flow.authorize["authorization_url"], follow_redirects=False)
    assert replay.status_code == 400
