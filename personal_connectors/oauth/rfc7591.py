"""OAuth 2.0 Dynamic Client Registration (RFC 7591): the service registers itself as a client.

The request asks for what the service's flows use: the authorization code with PKCE, refresh
tokens, the one redirect URI, and a confidential client authenticated at the token endpoint as
the authorization server prefers among the methods the service speaks. The answer's metadata is
read with Authlib's RFC 7591 claims; the secret it may carry goes only to the caller (which
seals it), never into an error or a log line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from personal_connectors.oauth.documents import DocumentTooLarge, fetch_document
from personal_connectors.oauth.errors import (
    DestinationNotAllowed,
    ProviderBadAnswer,
    ProviderRejected,
    ProviderUnreachable,
)
from personal_connectors.outbound.guard import DestinationRefused

# Client authentication methods the service speaks, preferred first: a confidential client
# where the server registers one, else a public one (`none`: PKCE alone protects the code, RFC
# 9700 §2.1.1). RFC 8414 §2: a server that lists none supports client_secret_basic.
AUTH_METHODS = ("client_secret_basic", "client_secret_post", "none")
PUBLIC = "none"
DEFAULT_AUTH_METHODS = ("client_secret_basic",)


@dataclass(frozen=True)
class Registration:
    client_id: str
    client_secret: str = field(repr=False)
    token_endpoint_auth_method: str
    client_secret_expires_at: datetime | None


def auth_method_for(metadata: dict[str, Any]) -> str | None:
    """The client authentication to register with, or None when the server offers none of ours."""
    offered = metadata.get("token_endpoint_auth_methods_supported") or DEFAULT_AUTH_METHODS
    return next((method for method in AUTH_METHODS if method in offered), None)


def client_metadata(
    *, redirect_uri: str, client_name: str, auth_method: str, scope: str | None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "redirect_uris": [redirect_uri],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": auth_method,
        "client_name": client_name,
        "application_type": "web",
    }
    if scope:
        body["scope"] = scope
    return body


async def register(
    http: httpx.AsyncClient, endpoint: str, metadata: dict[str, Any], *, call_seconds: float
) -> Registration:
    """POST the client's metadata to ``endpoint`` (§3.1) and read the answer (§3.2)."""
    try:
        response = await fetch_document(
            http,
            "POST",
            endpoint,
            json=metadata,
            headers={"Accept": "application/json"},
            timeout=call_seconds,
        )
    except DestinationRefused as exc:
        raise DestinationNotAllowed(exc.reason) from None
    except DocumentTooLarge as exc:
        raise ProviderBadAnswer(f"the registration answer: {exc}") from None
    except httpx.TransportError as exc:
        raise ProviderUnreachable(type(exc).__name__) from None
    if response.status_code >= 500:
        raise ProviderUnreachable(f"registration answered {response.status_code}")
    try:
        answer = response.json()
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        raise ProviderBadAnswer(f"registration answered HTTP {response.status_code}, not JSON")
    if response.status_code >= 400 or "error" in answer:
        error = answer.get("error")
        description = answer.get("error_description")
        raise ProviderRejected(
            error if isinstance(error, str) else "invalid_client_metadata",
            description if isinstance(description, str) else None,
        )
    return _read(answer, metadata["token_endpoint_auth_method"])


def _read(answer: dict[str, Any], asked_method: str) -> Registration:
    from authlib.oauth2.rfc7591 import ClientMetadataClaims

    try:
        claims = ClientMetadataClaims(answer, {})
        claims.validate_token_endpoint_auth_method()
        claims.validate_redirect_uris()
    except Exception as exc:  # Authlib raises its claim errors and ValueError alike
        raise ProviderBadAnswer(f"the registration answer is not usable ({exc})") from None
    client_id = answer.get("client_id")
    secret = answer.get("client_secret")
    method = answer.get("token_endpoint_auth_method") or asked_method
    if not isinstance(client_id, str) or not client_id:
        raise ProviderBadAnswer("the registration answer has no client_id")
    if method == PUBLIC and asked_method == PUBLIC:
        secret = ""  # a public client has none (one sent anyway is not used)
    elif method not in AUTH_METHODS or not isinstance(secret, str) or not secret:
        raise ProviderBadAnswer(
            "the authorization server registered a client without a secret this service can use"
        )
    expires = answer.get("client_secret_expires_at")
    expires_at = (
        datetime.fromtimestamp(expires, UTC)
        if isinstance(expires, int) and not isinstance(expires, bool) and expires > 0
        else None
    )
    return Registration(client_id, secret, method, expires_at)
