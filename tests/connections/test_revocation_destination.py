"""Revocation sends the client secret and the user's tokens: an endpoint from discovered
metadata that is plain http, or that points inside the deployment, is never sent to unless the
operator allows internal destinations."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from personal_connectors.config import Settings
from personal_connectors.connections.revocation import RevocationOutcome, revoke_grant
from personal_connectors.oauth.client import ClientCredentials, OAuthClient
from personal_connectors.oauth.endpoints import ProviderEndpoints
from personal_connectors.oauth.rfc8414 import DiscoveryError, verify_metadata
from personal_connectors.outbound.client import create_client
from personal_connectors.providers.catalog import load_catalog
from tests.support.loopback import LoopbackServer, QuietHandler

DISCOVERY = "https://idp.example.com/.well-known/openid-configuration"


@pytest.fixture
def revocation_server() -> Iterator[tuple[int, list[bytes]]]:
    """A loopback revocation endpoint that records every body it is sent."""
    bodies: list[bytes] = []

    class Handler(QuietHandler):
        def do_POST(self) -> None:
            bodies.append(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = LoopbackServer(Handler)
    yield int(server.base_url.rsplit(":", 1)[1]), bodies
    server.close()


def test_discovered_metadata_naming_an_http_revocation_endpoint_is_refused() -> None:
    document = {
        "issuer": "https://idp.example.com",
        "authorization_endpoint": "https://idp.example.com/authorize",
        "token_endpoint": "https://idp.example.com/token",
        "revocation_endpoint": "http://127.0.0.1:9/revoke",
    }
    with pytest.raises(DiscoveryError, match="revocation_endpoint is not an https URL"):
        verify_metadata(DISCOVERY, document, None)
    assert verify_metadata(DISCOVERY, document, None, allow_http=True) == document


def revoke(revocation_url: str, *, allow_internal: bool) -> list[RevocationOutcome]:
    entry = load_catalog().get("oidc")
    assert entry is not None
    settings = Settings(_env_file=None, outbound_allow_internal=allow_internal)  # type: ignore[call-arg]

    async def main() -> list[RevocationOutcome]:
        async with create_client(settings) as http:
            client = OAuthClient(
                entry,
                ProviderEndpoints(
                    authorization_url="https://idp.example.com/authorize",
                    token_url="https://idp.example.com/token",
                    revocation_url=revocation_url,
                ),
                ClientCredentials("org-client", "org-client-secret"),
                redirect_uri="https://connectors.example.test/callback",
                timeout=5,
                http=http,
            )
            return await revoke_grant(
                client, http, access_token="at-1", refresh_token="rt-1", time_limit=5
            )

    return asyncio.run(main())


def test_revocation_to_a_loopback_endpoint_is_refused_without_sending_anything(
    revocation_server: tuple[int, list[bytes]],
) -> None:
    port, bodies = revocation_server
    for url in (f"http://127.0.0.1:{port}/revoke", f"https://localhost:{port}/revoke"):
        outcomes = revoke(url, allow_internal=False)
        assert [outcome.revoked for outcome in outcomes] == [False, False]
        assert all(
            "not an allowed destination" in (outcome.reason or "") for outcome in outcomes
        ), outcomes
    assert bodies == []  # neither the client secret nor a token left the service

    allowed = revoke(f"http://127.0.0.1:{port}/revoke", allow_internal=True)
    assert [outcome.revoked for outcome in allowed] == [True, True]
    assert len(bodies) == 2 and b"token=rt-1" in bodies[0]
