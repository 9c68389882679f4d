"""Every built-in entry's authorization URL, built by the code the service uses (no network).

For each entry: a sample configuration (a client id, and each integration_param's example,
which must match its pattern) goes through ``validate_integration_params``,
``resolve_endpoints`` and ``OAuthClient.authorization_url`` — what ``POST /authorize`` runs —
and the URL must carry exactly what the entry declares.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
from urllib.parse import parse_qs, urlsplit

import pytest

from personal_connectors.oauth.client import ClientCredentials, OAuthClient, new_code_verifier
from personal_connectors.oauth.endpoints import resolve_endpoints
from personal_connectors.oauth.rfc8414 import MetadataCache
from personal_connectors.outbound.client import OutboundClient
from personal_connectors.providers.catalog import load_catalog
from personal_connectors.providers.schema import TEMPLATE_VARIABLE, ProviderEntry
from personal_connectors.providers.templating import fill, validate_integration_params

SAMPLE_CLIENT_ID = "sample-client-id"
SAMPLE_REDIRECT = "https://connectors.example.test/v1/personal-connectors/callback"
SAMPLE_STATE = "state_" + "s" * 43

ENTRIES = list(load_catalog())
# Entries that send users to an authorization page (the others take credentials: SPEC §10).
OAUTH = [entry for entry in ENTRIES if entry.auth_mode == "oauth2"]
STATIC = [entry for entry in OAUTH if not entry.uses_discovery]
DISCOVERED = [entry for entry in OAUTH if entry.uses_discovery]


def sample_params(entry: ProviderEntry) -> dict[str, str]:
    given = {name: spec.example for name, spec in entry.integration_params.items() if spec.example}
    return validate_integration_params(entry, given)


async def build(entry: ProviderEntry, verifier: str | None) -> tuple[str, dict[str, str]]:
    params = sample_params(entry)
    async with OutboundClient(plain=None) as http:
        endpoints = await resolve_endpoints(entry, params, http, MetadataCache())
        client = OAuthClient(
            entry,
            endpoints,
            ClientCredentials(SAMPLE_CLIENT_ID, "sample-secret"),
            redirect_uri=SAMPLE_REDIRECT,
            timeout=5,
            http=http,
        )
    url = client.authorization_url(
        state=SAMPLE_STATE, scopes=list(entry.default_scopes), code_verifier=verifier
    )
    return url, params


def s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


@pytest.mark.parametrize("entry", STATIC, ids=[entry.key for entry in STATIC])
def test_authorization_url_carries_what_the_entry_declares(entry: ProviderEntry) -> None:
    verifier = new_code_verifier() if entry.pkce else None  # as FlowService.start decides
    url, params = asyncio.run(build(entry, verifier))
    parts = urlsplit(url)
    expected = urlsplit(fill(entry.authorization_url or "", params))
    assert (parts.scheme, parts.netloc, parts.path) == (
        expected.scheme,
        expected.netloc,
        expected.path,
    )
    assert parts.scheme == "https" and not TEMPLATE_VARIABLE.search(url)
    raw = parse_qs(parts.query, keep_blank_values=True)
    assert all(len(values) == 1 for values in raw.values()), raw
    query = {name: values[0] for name, values in raw.items()}

    assert query.pop("client_id") == SAMPLE_CLIENT_ID
    assert query.pop("redirect_uri") == SAMPLE_REDIRECT
    assert query.pop("response_type") == "code"
    assert query.pop("state") == SAMPLE_STATE
    if entry.default_scopes:
        assert query.pop(entry.scope_param) == entry.scope_separator.join(entry.default_scopes)
    assert entry.scope_param not in query
    if entry.scope_param != "scope":
        assert "scope" not in query  # Slack: a user-token connector asks for no bot scope
    for name, value in entry.authorization_params.items():
        assert query.pop(name) == value, name
    if entry.pkce:
        assert verifier is not None
        assert query.pop("code_challenge_method") == "S256"
        assert query.pop("code_challenge") == s256(verifier)
    # Nothing else: no PKCE parameters for providers that refuse them, no stray values.
    assert query == {}, f"{entry.key}: unexpected parameters {sorted(query)}"


@pytest.mark.parametrize("entry", DISCOVERED, ids=[entry.key for entry in DISCOVERED])
def test_discovery_entries_take_their_urls_from_discovery(entry: ProviderEntry) -> None:
    """Their authorization URL exists only after the metadata fetch (covered by the flow tests)."""
    assert entry.discovery_url and entry.discovery_url.startswith("https://")
    assert entry.authorization_url is None and entry.token_url is None
    assert "/.well-known/" in entry.discovery_url


def test_the_sample_set_covers_the_known_quirks() -> None:
    """Guards the parametrization: quirky entries stay in the static set checked above."""
    keys = {entry.key for entry in STATIC}
    assert {"google", "slack", "zendesk", "shopify", "microsoft", "clickup", "github"} <= keys
    assert len(STATIC) + len(DISCOVERED) == len(OAUTH) >= 50


def test_google_and_slack_urls_in_full() -> None:
    google = load_catalog().get("google")
    assert google is not None
    url, _ = asyncio.run(build(google, "v" * 64))
    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    assert url.startswith("https://accounts.google.com/o/oauth2/v2/auth?")
    assert query["access_type"] == "offline" and query["prompt"] == "consent"
    assert query["scope"] == "openid email profile"
    slack = load_catalog().get("slack")
    assert slack is not None
    url, _ = asyncio.run(build(slack, None))
    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    assert query["user_scope"] == "users:read" and "scope" not in query
    assert "code_challenge" not in query


def test_microsoft_tenant_defaults_to_common() -> None:
    microsoft = load_catalog().get("microsoft")
    assert microsoft is not None
    assert validate_integration_params(microsoft, {}) == {"tenant": "common"}
    assert validate_integration_params(microsoft, {"tenant": "organizations"}) == {
        "tenant": "organizations"
    }
