"""The OAuth 2.0 client side of every provider conversation, Authlib's primitives over one client.

Authlib builds the requests: authorization URLs with the RFC 7636 S256 challenge
(``prepare_grant_uri``), token request bodies (``prepare_token_request``), RFC 7009 revocation
bodies and the client authentication the catalog names (``ClientAuth``). They are sent through
the process's shared, guarded ``httpx.AsyncClient`` (``outbound.client``). What this module adds
is the catalog's quirks — nested or form-encoded token answers, missing ``expires_in`` — and
the translation of failures into the classes of ``oauth.errors``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

import httpx
from authlib.common.security import generate_token
from authlib.common.urls import add_params_to_qs
from authlib.oauth2.auth import ClientAuth
from authlib.oauth2.rfc6749.parameters import prepare_grant_uri, prepare_token_request
from authlib.oauth2.rfc7009 import prepare_revoke_token_request
from authlib.oauth2.rfc7636 import create_s256_code_challenge

from personal_connectors.models.base import utcnow
from personal_connectors.oauth import rfc7523, rfc8628, rfc9126
from personal_connectors.oauth.endpoints import ProviderEndpoints
from personal_connectors.oauth.errors import (
    DestinationNotAllowed,
    ProviderBadAnswer,
    ProviderRejected,
    ProviderUnreachable,
)
from personal_connectors.outbound.client import OutboundClient
from personal_connectors.outbound.guard import DestinationRefused
from personal_connectors.providers.paths import lookup, lookup_text
from personal_connectors.providers.schema import ProviderEntry

# The fields a token answer is normalised to before it is read.
_TOKEN_FIELDS = ("access_token", "refresh_token", "expires_in", "scope", "token_type")
# RFC 6750 bearer, RFC 9449 DPoP and the old MAC draft; anything else is a provider's label.
_AUTH_SCHEMES = frozenset({"bearer", "dpop", "mac"})
# RFC 6749 §4.1.3: token requests are form-encoded; answers are JSON (some providers: a form).
_FORM_HEADERS = {
    "Accept": "application/json",
    "Content-Type": "application/x-www-form-urlencoded;charset=UTF-8",
}


def new_code_verifier() -> str:
    """RFC 7636 §4.1: 43 to 128 unreserved characters of CSPRNG output (here 64)."""
    return str(generate_token(64))


@dataclass(frozen=True)
class ClientCredentials:
    client_id: str
    client_secret: str


@dataclass(frozen=True)
class TokenGrant:
    """What a token endpoint granted, normalised; ``raw`` keeps the non-secret rest."""

    access_token: str
    refresh_token: str | None
    token_type: str
    expires_at: datetime | None
    scopes: list[str] | None
    raw: dict[str, Any] = field(default_factory=dict)
    # Non-secret values the catalog keeps with the connection (``provider_metadata``).
    metadata: dict[str, str] = field(default_factory=dict)
    # The OpenID Connect ID token of the answer, read once for the account's identity (a custom
    # MCP server's authorization server, ``apps.registrations``) and never stored.
    id_token: str | None = field(default=None, repr=False)

    def with_metadata(self, extra: Mapping[str, str]) -> TokenGrant:
        return replace(self, metadata={**self.metadata, **extra})


def scrub_secrets(value: Any) -> Any:
    """A copy without any token, secret or code, at any depth (for identity reads and logs)."""
    if isinstance(value, dict):
        return {
            k: scrub_secrets(v)
            for k, v in value.items()
            if not any(word in k.lower() for word in ("token", "secret", "code", "password"))
        }
    if isinstance(value, list):
        return [scrub_secrets(item) for item in value]
    return value


def _decode_body(response: httpx.Response) -> Any:
    content_type = response.headers.get("content-type", "")
    if "json" in content_type or response.content[:1] in (b"{", b"["):
        return response.json()
    if "x-www-form-urlencoded" in content_type or "text/plain" in content_type:
        return dict(parse_qsl(response.text))
    return response.json()


class OAuthClient:
    """A provider's OAuth endpoints spoken with one app's credentials."""

    def __init__(
        self,
        entry: ProviderEntry,
        endpoints: ProviderEndpoints,
        credentials: ClientCredentials,
        *,
        redirect_uri: str,
        timeout: float,
        http: OutboundClient,
    ) -> None:
        """``http``: the process's shared client (``Runtime.http``); never closed here."""
        self.entry = entry
        self.endpoints = endpoints
        self.credentials = credentials
        self.redirect_uri = redirect_uri
        self.timeout = timeout
        self.http = http
        self._auth = ClientAuth(
            credentials.client_id, credentials.client_secret, entry.token_endpoint_auth_method
        )
        # RFC 7009 calls authenticate like the token endpoint unless the entry says otherwise.
        self._revocation_auth = ClientAuth(
            credentials.client_id,
            credentials.client_secret,
            entry.revocation_auth_method or entry.token_endpoint_auth_method,
        )

    def authorization_url(self, *, state: str, scopes: list[str], code_verifier: str | None) -> str:
        params: dict[str, Any] = dict(self.entry.authorization_params)
        if scopes:
            params[self.entry.scope_param] = self.entry.join_scopes(scopes)
        params.setdefault("redirect_uri", self.redirect_uri)
        params.setdefault("scope", None)
        if code_verifier:
            params["code_challenge"] = create_s256_code_challenge(code_verifier)
            params["code_challenge_method"] = "S256"
        return str(
            prepare_grant_uri(
                self.endpoints.authorization_url,
                client_id=self.credentials.client_id,
                response_type="code",
                state=state,
                **params,
            )
        )

    async def exchange_code(
        self, code: str, *, code_verifier: str | None, requested_scopes: list[str]
    ) -> TokenGrant:
        params: dict[str, Any] = {"code": code, **self.entry.token_params}
        if code_verifier:
            params["code_verifier"] = code_verifier
        body = prepare_token_request(
            "authorization_code", "", redirect_uri=self.redirect_uri, **params
        )
        token = await self._post_authenticated(self.endpoints.token_url, body)
        return self._grant(token, requested_scopes)

    async def refresh(self, refresh_token: str, *, current_scopes: list[str]) -> TokenGrant:
        body = prepare_token_request(
            "refresh_token", "", refresh_token=refresh_token, **self.entry.token_params
        )
        url = self.endpoints.refresh_url or self.endpoints.token_url
        # No refresh token in the answer (a provider that does not rotate): the stored one stays,
        # by ``TokenVault.sealed``, the rule's one place.
        return self._grant(await self._post_authenticated(url, body), current_scopes)

    async def client_credentials_grant(self, scopes: list[str]) -> TokenGrant:
        """RFC 6749 §4.4: a token for the client itself (``oauth2_client_credentials``)."""
        params: dict[str, Any] = dict(self.entry.token_params)
        if scopes:
            params["scope"] = self.entry.join_scopes(scopes)
        body = prepare_token_request("client_credentials", "", **params)
        return self._grant(await self._post_authenticated(self.endpoints.token_url, body), scopes)

    async def jwt_bearer_grant(
        self, assertion: str, scopes: list[str], *, scope_param: bool
    ) -> TokenGrant:
        """RFC 7523 §2.1: a token for a signed assertion (``jwt_bearer``); the assertion is the
        client's proof, so no client authentication is added."""
        params: dict[str, Any] = {"assertion": assertion, **self.entry.token_params}
        if scopes and scope_param:
            params["scope"] = self.entry.join_scopes(scopes)
        body = prepare_token_request(rfc7523.GRANT_TYPE, "", **params)
        response = await self._send(
            self.endpoints.token_url, dict(_FORM_HEADERS), body, authenticate=False
        )
        return self._grant(self._answer(response), scopes)

    async def pushed_authorization_url(
        self, *, state: str, scopes: list[str], code_verifier: str | None
    ) -> str:
        """RFC 9126: push the parameters of ``authorization_url`` and return the short URL."""
        assert self.endpoints.par_url is not None
        params = rfc9126.pushed_parameters(
            self.authorization_url(state=state, scopes=scopes, code_verifier=code_verifier),
            client_auth_method=self.entry.token_endpoint_auth_method,
        )
        answer = await self._post_authenticated(
            self.endpoints.par_url, add_params_to_qs("", list(params.items()))
        )
        pushed = rfc9126.parse_pushed_response(answer)
        return rfc9126.authorization_url(
            self.endpoints.authorization_url, self.credentials.client_id, pushed.request_uri
        )

    async def request_device_authorization(self, scopes: list[str]) -> rfc8628.DeviceAuthorization:
        """RFC 8628 §3.1, authenticated like a token request (the app is confidential)."""
        assert self.endpoints.device_authorization_url is not None
        params = [("scope", self.entry.join_scopes(scopes))] if scopes else []
        answer = await self._post_authenticated(
            self.endpoints.device_authorization_url, add_params_to_qs("", params)
        )
        return rfc8628.parse_device_authorization(answer)

    async def poll_device_token(
        self, device_code: str, *, requested_scopes: list[str]
    ) -> TokenGrant:
        """RFC 8628 §3.4. "Not yet" comes back as ``ProviderRejected`` (authorization_pending)."""
        body = prepare_token_request(
            rfc8628.DEVICE_CODE_GRANT_TYPE, "", device_code=device_code, **self.entry.token_params
        )
        token = await self._post_authenticated(self.endpoints.token_url, body)
        return self._grant(token, requested_scopes)

    async def revoke(self, token: str, token_type_hint: str) -> None:
        """RFC 7009. A 200 is not proof that a live token died (§2.2), only that it is gone."""
        if not self.endpoints.revocation_url:
            raise ProviderBadAnswer("the provider has no revocation endpoint")
        body, headers = prepare_revoke_token_request(token, token_type_hint)
        response = await self._send(
            self.endpoints.revocation_url, headers, body, auth=self._revocation_auth
        )
        if response.status_code >= 500:
            raise ProviderUnreachable(f"revocation answered {response.status_code}")
        if response.status_code >= 400:
            raise ProviderBadAnswer(f"revocation answered {response.status_code}")

    async def _post_authenticated(self, url: str, body: str) -> dict[str, Any]:
        """A client-authenticated form POST to an endpoint that answers an OAuth JSON object."""
        return self._answer(await self._send(url, dict(_FORM_HEADERS), body))

    async def _send(
        self,
        url: str,
        headers: dict[str, str],
        body: str,
        *,
        auth: ClientAuth | None = None,
        authenticate: bool = True,
    ) -> httpx.Response:
        """``auth``: another client authentication than the app's; ``authenticate=False``:
        none at all (an RFC 7523 assertion is the client's proof)."""
        if authenticate:
            url, headers, body = (auth or self._auth).prepare("POST", url, headers, body)
        try:
            return await self.http.send_plain(
                "POST", url, headers=headers, content=body.encode(), call_seconds=self.timeout
            )
        except DestinationRefused as exc:
            raise DestinationNotAllowed(exc.reason) from None
        except httpx.TransportError as exc:
            raise ProviderUnreachable(type(exc).__name__) from None

    def _answer(self, response: httpx.Response) -> dict[str, Any]:
        """The answer as an object, nested tokens lifted; an OAuth ``error`` raised."""
        status = response.status_code
        if status >= 500:
            raise ProviderUnreachable(f"HTTP {status}", _retry_after(response))
        try:
            body = _decode_body(response)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            if status == 429:
                raise ProviderUnreachable(f"HTTP {status}", _retry_after(response))
            if status >= 400:
                raise ProviderBadAnswer(f"HTTP {status} without an OAuth error")
            raise ProviderBadAnswer("the answer is not a JSON object")
        if "error" in body:
            error = body["error"]
            description = body.get("error_description")
            raise ProviderRejected(
                error if isinstance(error, str) else json.dumps(error)[:100],
                None if description is None else str(description),
            )
        paths = self.entry.token_response
        if paths is not None:
            lifted = dict(body)
            for name in _TOKEN_FIELDS:
                value = lookup(body, getattr(paths, name))
                if value is not None:
                    lifted[name] = value
            body = lifted
        return body

    def _grant(self, token: Mapping[str, Any], requested_scopes: list[str]) -> TokenGrant:
        access_token = token.get("access_token")
        if not isinstance(access_token, str) or not access_token:
            raise ProviderBadAnswer("the token answer has no access_token")
        refresh_token = token.get("refresh_token")
        expires_in = token.get("expires_in")
        expires_at: datetime | None = None
        try:
            if expires_in not in (None, ""):
                expires_at = utcnow() + timedelta(seconds=int(float(expires_in)))
        except (TypeError, ValueError):
            expires_at = None
        if expires_at is None and self.entry.default_expires_in:
            expires_at = utcnow() + timedelta(seconds=self.entry.default_expires_in)
        # RFC 6749 §5.1: the granted scope, or when the answer has none the requested one (a
        # blank `scope` names no scope-token: it is read as none sent, not as none granted).
        scopes = _split_scopes(lookup_text(token, "scope") or "") or list(requested_scopes)
        raw = scrub_secrets(dict(token))
        # Read from the scrubbed answer, so no credential can become metadata.
        metadata = {
            name: value
            for name, path in self.entry.token_metadata.items()
            if (value := lookup_text(raw, path)) is not None
        }
        return TokenGrant(
            access_token=access_token,
            refresh_token=refresh_token
            if isinstance(refresh_token, str) and refresh_token
            else None,
            token_type=_auth_scheme(token.get("token_type")),
            expires_at=expires_at,
            scopes=scopes,
            raw=raw,
            metadata=metadata,
            id_token=id_token if isinstance(id_token := token.get("id_token"), str) else None,
        )


def _auth_scheme(token_type: object) -> str:
    """The HTTP scheme the token is sent with. Slack labels its tokens ``bot`` or ``user``,
    which are no schemes: such tokens, like unlabelled ones, are bearer tokens."""
    if isinstance(token_type, str) and token_type.lower() in _AUTH_SCHEMES:
        return token_type
    return "Bearer"


def _split_scopes(text: str) -> list[str]:
    return [part for part in text.replace(",", " ").split() if part]


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return float(value) if value else None
    except ValueError:
        return None
