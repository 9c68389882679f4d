"""How the service authenticates RFC 7009 revocation and reads identity, against a local server.

Calendly takes the client credentials in the revocation body while its token endpoint wants
Basic; Todoist the other way round; HubSpot's v3 identity call is an introspection POST with the
client credentials and the token in a form body; GitHub's ``/user`` e-mail is often null and the
primary verified address is in ``/user/emails``. A loopback server records what arrives.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import pytest

from personal_connectors.oauth.client import ClientCredentials, OAuthClient, TokenGrant
from personal_connectors.oauth.endpoints import resolve_endpoints
from personal_connectors.oauth.errors import ProviderBadAnswer
from personal_connectors.oauth.identity import AccountIdentity, read_identity
from personal_connectors.oauth.rfc8414 import MetadataCache
from personal_connectors.outbound.client import OutboundClient
from personal_connectors.providers.schema import ProviderEntry
from tests.support.loopback import LoopbackServer, QuietHandler

CLIENT = ClientCredentials("client-42", "secret-42")
TOKEN = "at-live-token"


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: str

    @property
    def form(self) -> dict[str, str]:
        return dict(parse_qsl(self.body))

    def basic(self) -> tuple[str, str] | None:
        value = self.headers.get("authorization", "")
        if not value.startswith("Basic "):
            return None
        user, _, password = base64.b64decode(value[6:]).decode().partition(":")
        return user, password


class Provider:
    """Answers each path with the JSON set in ``answers`` (404 otherwise), recording calls."""

    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self.answers: dict[str, tuple[int, Any]] = {}
        provider = self

        class Handler(QuietHandler):
            def _handle(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length).decode() if length else ""
                headers = {k.lower(): v for k, v in self.headers.items()}
                provider.seen.append(Seen(self.command, self.path, headers, body))
                status, payload = provider.answers.get(self.path, (404, {"error": "nope"}))
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _handle

        self._server = LoopbackServer(Handler)
        self.url = self._server.base_url

    def calls(self, path: str) -> list[Seen]:
        return [call for call in self.seen if call.path == path]

    def close(self) -> None:
        self._server.close()


@pytest.fixture
def provider() -> Iterator[Provider]:
    server = Provider()
    yield server
    server.close()


def entry(provider: Provider, **fields: Any) -> ProviderEntry:
    base = provider.url
    return ProviderEntry.model_validate(
        {
            "key": "local",
            "display_name": "Local",
            "authorization_url": f"{base}/authorize",
            "token_url": f"{base}/token",
            "userinfo": {"url": f"{base}/user", "id_path": "id"},
            **fields,
        }
    )


async def _revoke(item: ProviderEntry, token: str) -> None:
    async with OutboundClient(plain=None) as http:
        endpoints = await resolve_endpoints(item, {}, http, MetadataCache())
        client = OAuthClient(
            item, endpoints, CLIENT, redirect_uri="https://x.test/cb", timeout=5, http=http
        )
        await client.revoke(token, "refresh_token")


async def _identity(
    item: ProviderEntry, credentials: ClientCredentials | None = CLIENT
) -> AccountIdentity:
    async with OutboundClient(plain=None) as http:
        endpoints = await resolve_endpoints(item, {}, http, MetadataCache())
        grant = TokenGrant(TOKEN, None, "Bearer", None, None)
        return await read_identity(item, endpoints, grant, http, credentials)


# --- RFC 7009 revocation -------------------------------------------------------------------------


def test_calendly_style_revocation_sends_the_credentials_in_the_body(provider: Provider) -> None:
    provider.answers["/revoke"] = (200, {})
    item = entry(
        provider,
        revocation_url=f"{provider.url}/revoke",
        token_endpoint_auth_method="client_secret_basic",
        revocation_auth_method="client_secret_post",
    )
    asyncio.run(_revoke(item, "rt-1"))
    [call] = provider.calls("/revoke")
    assert call.method == "POST"
    assert "authorization" not in call.headers
    assert call.form == {
        "token": "rt-1",
        "token_type_hint": "refresh_token",
        "client_id": CLIENT.client_id,
        "client_secret": CLIENT.client_secret,
    }


def test_todoist_style_revocation_sends_basic_and_no_secret_in_the_body(
    provider: Provider,
) -> None:
    provider.answers["/revoke"] = (200, {})
    item = entry(
        provider,
        revocation_url=f"{provider.url}/revoke",
        token_endpoint_auth_method="client_secret_post",
        revocation_auth_method="client_secret_basic",
    )
    asyncio.run(_revoke(item, "at-1"))
    [call] = provider.calls("/revoke")
    assert call.basic() == (CLIENT.client_id, CLIENT.client_secret)
    assert call.form == {"token": "at-1", "token_type_hint": "refresh_token"}


def test_revocation_authenticates_like_the_token_endpoint_unless_told(provider: Provider) -> None:
    provider.answers["/revoke"] = (200, {})
    item = entry(
        provider,
        revocation_url=f"{provider.url}/revoke",
        token_endpoint_auth_method="client_secret_basic",
    )
    asyncio.run(_revoke(item, "rt-2"))
    [call] = provider.calls("/revoke")
    assert call.basic() == (CLIENT.client_id, CLIENT.client_secret)
    assert "client_secret" not in call.form


def test_revocation_auth_method_is_for_rfc7009_only(provider: Provider) -> None:
    with pytest.raises(ValueError, match="revocation_auth_method"):
        entry(
            provider,
            revocation={"url": f"{provider.url}/own", "auth": "bearer"},
            revocation_auth_method="client_secret_post",
        )


# --- GitHub-style e-mail fallback ----------------------------------------------------------------

GITHUB_USERINFO = {
    "url": "/user",
    "id_path": "id",
    "email_path": "email",
    "name_path": ["name", "login"],
    "email_fallback": {"url": "/user/emails", "require": ["primary", "verified"]},
}


def github_style(provider: Provider) -> ProviderEntry:
    userinfo = dict(GITHUB_USERINFO)
    userinfo["url"] = provider.url + "/user"
    userinfo["email_fallback"] = {
        **GITHUB_USERINFO["email_fallback"],  # type: ignore[dict-item]
        "url": provider.url + "/user/emails",
    }
    return entry(provider, userinfo=userinfo)


def test_a_null_user_email_is_taken_from_the_primary_verified_address(provider: Provider) -> None:
    provider.answers["/user"] = (200, {"id": 7, "login": "octo", "name": None, "email": None})
    provider.answers["/user/emails"] = (
        200,
        [
            {"email": "old@example.test", "primary": False, "verified": True},
            {"email": "octo@example.test", "primary": True, "verified": True},
        ],
    )
    identity = asyncio.run(_identity(github_style(provider)))
    assert identity == AccountIdentity("7", "octo@example.test", "octo")
    [call] = provider.calls("/user/emails")
    assert call.headers["authorization"] == f"Bearer {TOKEN}"


def test_an_unverified_primary_address_is_not_taken(provider: Provider) -> None:
    provider.answers["/user"] = (200, {"id": 7, "login": "octo", "email": None})
    provider.answers["/user/emails"] = (
        200,
        [
            {"email": "octo@example.test", "primary": True, "verified": False},
            {"email": "other@example.test", "primary": False, "verified": True},
        ],
    )
    assert asyncio.run(_identity(github_style(provider))).email is None


def test_a_public_user_email_needs_no_second_call(provider: Provider) -> None:
    provider.answers["/user"] = (200, {"id": 7, "login": "octo", "email": "pub@example.test"})
    assert asyncio.run(_identity(github_style(provider))).email == "pub@example.test"
    assert provider.calls("/user/emails") == []


def test_a_failing_email_call_connects_without_an_email(provider: Provider) -> None:
    """403 when the grant lacks user:email: the account is still identified."""
    provider.answers["/user"] = (200, {"id": 7, "login": "octo", "email": None})
    provider.answers["/user/emails"] = (403, {"message": "Resource not accessible"})
    identity = asyncio.run(_identity(github_style(provider)))
    assert identity == AccountIdentity("7", None, "octo")
    assert len(provider.calls("/user/emails")) == 1


def test_the_address_list_may_sit_under_a_path(provider: Provider) -> None:
    """Bitbucket pages its /user/emails under ``values`` with is_primary/is_confirmed flags."""
    provider.answers["/user"] = (200, {"uuid": "{u-1}", "display_name": "Bit"})
    provider.answers["/user/emails"] = (
        200,
        {"values": [{"email": "b@example.test", "is_primary": True, "is_confirmed": True}]},
    )
    item = entry(
        provider,
        userinfo={
            "url": provider.url + "/user",
            "id_path": "uuid",
            "email_path": None,
            "name_path": "display_name",
            "email_fallback": {
                "url": provider.url + "/user/emails",
                "list_path": "values",
                "require": ["is_primary", "is_confirmed"],
            },
        },
    )
    assert asyncio.run(_identity(item)) == AccountIdentity("{u-1}", "b@example.test", "Bit")


# --- HubSpot-style introspection ----------------------------------------------------------------


def introspecting(provider: Provider) -> ProviderEntry:
    return entry(
        provider,
        userinfo={
            "url": provider.url + "/introspect",
            "method": "POST",
            "body_format": "form",
            "body": {
                "client_id": "{client_id}",
                "client_secret": "{client_secret}",
                "token": "{access_token}",
                "token_type_hint": "access_token",
            },
            "id_path": "user_id",
            "email_path": "user",
            "name_path": None,
        },
    )


def test_introspection_identity_posts_the_credentials_in_a_form_body(provider: Provider) -> None:
    provider.answers["/introspect"] = (
        200,
        {"active": True, "user_id": 123, "user": "hs@example.test", "hub_id": 9},
    )
    identity = asyncio.run(_identity(introspecting(provider)))
    assert identity == AccountIdentity("123", "hs@example.test", None)
    [call] = provider.calls("/introspect")
    assert call.method == "POST"
    assert call.headers["content-type"] == "application/x-www-form-urlencoded"
    assert "authorization" not in call.headers  # the token travels in the body only
    assert call.form == {
        "client_id": CLIENT.client_id,
        "client_secret": CLIENT.client_secret,
        "token": TOKEN,
        "token_type_hint": "access_token",
    }


def test_introspection_without_the_app_credentials_is_refused(provider: Provider) -> None:
    with pytest.raises(ProviderBadAnswer, match="client credentials"):
        asyncio.run(_identity(introspecting(provider), credentials=None))
    assert provider.seen == []


def test_graphql_bodies_keep_their_braces(provider: Provider) -> None:
    """Only service values are filled: a GraphQL query's own braces go out as written."""
    provider.answers["/graphql"] = (200, {"data": {"viewer": {"id": "v1"}}})
    query = "{ viewer { id } } {id}"
    item = entry(
        provider,
        userinfo={
            "url": provider.url + "/graphql",
            "method": "POST",
            "body": {"query": query},
            "id_path": "data.viewer.id",
        },
    )
    assert asyncio.run(_identity(item)).account_id == "v1"
    [call] = provider.calls("/graphql")
    assert json.loads(call.body) == {"query": query}
    assert call.headers["authorization"] == f"Bearer {TOKEN}"


@pytest.mark.parametrize(
    "userinfo",
    [
        # the secret in a header, where logs keep it
        {"url": "https://idp.example/i", "headers": {"X-Secret": "{client_secret}"}},
        # credentials in a body sent by GET, or to a discovered (unwritten) URL
        {"url": "https://idp.example/i", "body": {"s": "{client_secret}"}},
        {"method": "POST", "body": {"s": "{client_secret}"}},
        # a form body of nested values
        {
            "url": "https://idp.example/i",
            "method": "POST",
            "body_format": "form",
            "body": {"a": {}},
        },
    ],
)
def test_identity_credentials_rules(userinfo: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        ProviderEntry.model_validate(
            {
                "key": "bad",
                "display_name": "Bad",
                "discovery_url": "https://idp.example/.well-known/openid-configuration",
                "userinfo": userinfo,
            }
        )
