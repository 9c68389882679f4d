"""Self-test of the oidc-provider harness: proves the behaviour other tests rely on."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
import pytest
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import OAuth2Client

from tests.support import web
from tests.support.oidc import OidcProvider, free_port, login_and_consent, token_request

CLIENT_ID = "broker"
CLIENT_SECRET = "broker-secret"
SCOPE = "openid email profile offline_access"
CALLBACK_PATH = "/v1/personal-connectors/callback"


def _client_metadata(redirect_uri: str) -> dict[str, Any]:
    return {
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "redirect_uris": [redirect_uri],
        "grant_types": ["authorization_code", "refresh_token"],
        "token_endpoint_auth_method": "client_secret_basic",
    }


@pytest.fixture(scope="module")
def redirect_uri() -> str:
    return f"http://127.0.0.1:{free_port()}{CALLBACK_PATH}"


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory, redirect_uri: str) -> Iterator[OidcProvider]:
    workdir = tmp_path_factory.mktemp("oidc")
    with OidcProvider.start([_client_metadata(redirect_uri)], workdir=workdir) as op:
        yield op


def _oauth_client(redirect_uri: str) -> OAuth2Client:
    return OAuth2Client(
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        scope=SCOPE,
        redirect_uri=redirect_uri,
        code_challenge_method="S256",
        token_endpoint_auth_method="client_secret_basic",
    )


def _authorize(
    op: OidcProvider, redirect_uri: str, *, prompt: str | None = "consent"
) -> tuple[OAuth2Client, str, str, str]:
    """Build the auth URL by hand; return (client, url, state, code_verifier)."""
    client = _oauth_client(redirect_uri)
    verifier = generate_token(48)
    extra = {"prompt": prompt} if prompt else {}
    url, state = client.create_authorization_url(
        op.metadata["authorization_endpoint"], code_verifier=verifier, **extra
    )
    return client, url, state, verifier


def _query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def _jwt_claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    claims: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return claims


def _tokens_for(op: OidcProvider, redirect_uri: str, login: str = "alice") -> dict[str, Any]:
    client, url, _state, verifier = _authorize(op, redirect_uri)
    callback = login_and_consent(url, login=login)
    token: dict[str, Any] = client.fetch_token(
        op.metadata["token_endpoint"], authorization_response=callback, code_verifier=verifier
    )
    return token


def _refresh(op: OidcProvider, refresh_token: str) -> httpx.Response:
    data = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    return token_request(op, CLIENT_ID, CLIENT_SECRET, data)


def test_discovery_advertises_rfc9207_pkce_and_endpoints(provider: OidcProvider) -> None:
    md = provider.metadata
    assert md["issuer"] == provider.issuer == f"http://127.0.0.1:{provider.port}"
    assert md["authorization_response_iss_parameter_supported"] is True
    assert md["code_challenge_methods_supported"] == ["S256"]
    assert set(md["scopes_supported"]) >= {"openid", "email", "profile", "offline_access"}
    for endpoint in ("revocation_endpoint", "introspection_endpoint", "userinfo_endpoint"):
        assert md[endpoint].startswith(provider.issuer)
    # Optional features stay off unless asked for.
    assert "device_authorization_endpoint" not in md
    assert "pushed_authorization_request_endpoint" not in md
    assert web.get(provider.discovery_url).json() == md


def test_code_flow_with_pkce_returns_iss_and_all_tokens(
    provider: OidcProvider, redirect_uri: str
) -> None:
    client, url, state, verifier = _authorize(provider, redirect_uri)
    assert _query(url)["code_challenge_method"] == "S256"

    callback = login_and_consent(url, login="alice")

    assert callback.startswith(redirect_uri + "?")
    params = _query(callback)
    assert params["state"] == state
    assert params["iss"] == provider.issuer
    assert params["code"]
    token = client.fetch_token(
        provider.metadata["token_endpoint"], authorization_response=callback, code_verifier=verifier
    )
    assert token["access_token"] and token["refresh_token"] and token["id_token"]
    id_claims = _jwt_claims(token["id_token"])
    assert (id_claims["iss"], id_claims["aud"], id_claims["sub"]) == (
        provider.issuer,
        CLIENT_ID,
        "alice",
    )

    userinfo = client.get(provider.metadata["userinfo_endpoint"]).json()
    assert userinfo == {
        "sub": "alice",
        "email": "alice@example.test",
        "email_verified": True,
        "name": "Alice",
    }


def test_pkce_is_required(provider: OidcProvider, redirect_uri: str) -> None:
    client = _oauth_client(redirect_uri)
    client.code_challenge_method = None
    url, _ = client.create_authorization_url(provider.metadata["authorization_endpoint"])
    callback = login_and_consent(url)
    assert _query(callback)["error"] == "invalid_request"
    assert "PKCE" in _query(callback)["error_description"]


def test_offline_access_needs_prompt_consent(provider: OidcProvider, redirect_uri: str) -> None:
    """oidc-provider drops offline_access when prompt is present but lacks 'consent'."""
    client, url, _state, verifier = _authorize(provider, redirect_uri, prompt="login")
    callback = login_and_consent(url)
    token = client.fetch_token(
        provider.metadata["token_endpoint"], authorization_response=callback, code_verifier=verifier
    )
    assert token["access_token"]
    assert "refresh_token" not in token
    assert "offline_access" not in token["scope"].split()


def test_refresh_rotates_and_reuse_revokes_the_grant(
    provider: OidcProvider, redirect_uri: str
) -> None:
    old = _tokens_for(provider, redirect_uri)["refresh_token"]

    first = _refresh(provider, old)
    assert first.status_code == 200, first.text
    new = first.json()["refresh_token"]
    assert new != old
    assert first.json()["access_token"]

    reuse = _refresh(provider, old)
    assert reuse.status_code == 400
    assert reuse.json()["error"] == "invalid_grant"

    after = _refresh(provider, new)
    assert after.status_code == 400
    assert after.json()["error"] == "invalid_grant"


def test_revoked_refresh_token_no_longer_refreshes(
    provider: OidcProvider, redirect_uri: str
) -> None:
    refresh_token = _tokens_for(provider, redirect_uri)["refresh_token"]
    revoked = web.post(
        provider.metadata["revocation_endpoint"],
        data={"token": refresh_token, "token_type_hint": "refresh_token"},
        auth=(CLIENT_ID, CLIENT_SECRET),
    )
    assert revoked.status_code == 200

    after = _refresh(provider, refresh_token)
    assert after.status_code == 400
    assert after.json()["error"] == "invalid_grant"


def test_deny_returns_access_denied(provider: OidcProvider, redirect_uri: str) -> None:
    _client, url, state, _verifier = _authorize(provider, redirect_uri)
    callback = login_and_consent(url, deny=True)
    assert callback.startswith(redirect_uri + "?")
    params = _query(callback)
    assert params["error"] == "access_denied"
    assert params["state"] == state
    assert params["iss"] == provider.issuer
    assert "code" not in params


def test_auto_login_needs_no_forms(tmp_path: Path, redirect_uri: str) -> None:
    with OidcProvider.start(
        [_client_metadata(redirect_uri)], auto_login="bob", workdir=tmp_path
    ) as op:
        client, url, state, verifier = _authorize(op, redirect_uri)
        methods: list[str] = []
        with web.client(
            event_hooks={"request": [lambda request: methods.append(request.method)]}
        ) as browser:
            response = browser.get(url)
            callback = ""
            while response.is_redirect:
                callback = urljoin(url, response.headers["location"])
                if not callback.startswith(op.issuer + "/"):
                    break
                response = browser.get(callback)
        assert response.is_redirect, response.text[:200]
        assert callback.startswith(redirect_uri + "?")
        assert set(methods) == {"GET"}, callback
        assert _query(callback).get("state") == state, callback
        token = client.fetch_token(
            op.metadata["token_endpoint"], authorization_response=callback, code_verifier=verifier
        )
        assert token["refresh_token"]
        assert _jwt_claims(token["id_token"])["sub"] == "bob"


def test_optional_features_show_in_discovery(tmp_path: Path, redirect_uri: str) -> None:
    with OidcProvider.start(
        [_client_metadata(redirect_uri)],
        features={"device_flow": True, "par": True},
        workdir=tmp_path,
    ) as op:
        md = op.metadata
    assert md["device_authorization_endpoint"] == f"{op.issuer}/device/auth"
    assert md["pushed_authorization_request_endpoint"] == f"{op.issuer}/request"
    assert "require_pushed_authorization_requests" not in md


def test_login_and_consent_reports_unexpected_pages(provider: OidcProvider) -> None:
    url = f"{provider.metadata['authorization_endpoint']}?client_id=nobody&response_type=code"
    with pytest.raises(RuntimeError, match=r"HTTP 400 at http://127\.0\.0\.1.*title 'oops"):
        login_and_consent(url)
