"""The OAuth 2.0 client side of every provider conversation, done by Authlib.

Authlib builds authorization URLs (with the RFC 7636 S256 challenge), exchanges codes, refreshes
and revokes (RFC 7009) with the client authentication the catalog names. What this module adds is
the catalog's quirks — nested or form-encoded token answers, missing ``expires_in`` — and the
translation of failures into the three classes of ``oauth.errors``.
"""

from __future__ import annotations

import json
import ssl
import urllib.request
import warnings
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import cache
from typing import Any
from urllib.parse import parse_qsl

import httpx
from authlib.common.security import generate_token
from authlib.deprecate import AuthlibDeprecationWarning
from authlib.integrations.base_client.errors import OAuthError

# Authlib 1.9 prefers the `httpx2` fork and warns when it falls back to `httpx`, which this
# service uses everywhere (one HTTP stack, one set of transports in tests). The fallback is
# supported; the warning is noise until the project moves stacks deliberately.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", AuthlibDeprecationWarning)
    from authlib.integrations.httpx_client import AsyncOAuth2Client

from personal_connectors.models.base import utcnow
from personal_connectors.oauth import rfc8628, rfc9126
from personal_connectors.oauth.endpoints import ProviderEndpoints
from personal_connectors.oauth.errors import (
    ProviderBadAnswer,
    ProviderRejected,
    ProviderUnreachable,
)
from personal_connectors.oauth.transport import KeepAliveTransport
from personal_connectors.providers.paths import lookup, lookup_text
from personal_connectors.providers.schema import ProviderEntry

# The fields a token answer is normalised to before Authlib parses it.
_TOKEN_FIELDS = ("access_token", "refresh_token", "expires_in", "scope", "token_type")
# RFC 6750 bearer, RFC 9449 DPoP and the old MAC draft; anything else is a provider's label.
_AUTH_SCHEMES = frozenset({"bearer", "dpop", "mac"})


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
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """``transport``: a keep-alive pool shared by calls (``shared_provider_transport``)."""
        self.entry = entry
        self.endpoints = endpoints
        self.credentials = credentials
        self.redirect_uri = redirect_uri
        self.timeout = timeout
        self.transport = transport

    def _session(self) -> AsyncOAuth2Client:
        session = AsyncOAuth2Client(
            verify=_tls_context(),
            transport=self.transport,
            client_id=self.credentials.client_id,
            client_secret=self.credentials.client_secret,
            token_endpoint_auth_method=self.entry.token_endpoint_auth_method,
            revocation_endpoint_auth_method=self.entry.token_endpoint_auth_method,
            redirect_uri=self.redirect_uri,
            code_challenge_method="S256",
            timeout=self.timeout,
            follow_redirects=False,
        )
        session.register_compliance_hook("access_token_response", self._normalise)
        session.register_compliance_hook("refresh_token_response", self._normalise)
        return session

    @asynccontextmanager
    async def _opened(self) -> AsyncIterator[AsyncOAuth2Client]:
        """An Authlib session for one call: its state (the last token) is never shared.

        Over a shared transport it is left open: closing a client closes its transport, the pool
        every other call uses (a session over one holds nothing else to release). Without one,
        the session owns a pool and connection of its own and closes them.
        """
        session = self._session()
        if self.transport is not None:
            yield session
            return
        async with session:
            yield session

    def _normalise(self, response: httpx.Response) -> httpx.Response:
        """Lift nested tokens to the top level and accept form-encoded answers."""
        if response.status_code >= 500:
            return response
        try:
            body = _decode_body(response)
        except ValueError:
            return response
        if not isinstance(body, dict):
            return response
        paths = self.entry.token_response
        if paths is not None and "error" not in body:
            lifted = dict(body)
            for name in _TOKEN_FIELDS:
                value = lookup(body, getattr(paths, name))
                if value is not None:
                    lifted[name] = value
            body = lifted
        if "error" in body and not isinstance(body["error"], str):
            body["error"] = json.dumps(body["error"])[:100]
        return httpx.Response(response.status_code, json=body, request=response.request)

    def authorization_url(self, *, state: str, scopes: list[str], code_verifier: str | None) -> str:
        session = self._session()
        params = dict(self.entry.authorization_params)
        if scopes:
            params[self.entry.scope_param] = self.entry.join_scopes(scopes)
        url, _ = session.create_authorization_url(
            self.endpoints.authorization_url, state=state, code_verifier=code_verifier, **params
        )
        return str(url)

    async def exchange_code(
        self, code: str, *, code_verifier: str | None, requested_scopes: list[str]
    ) -> TokenGrant:
        params: dict[str, Any] = {"code": code, **self.entry.token_params}
        if code_verifier:
            params["code_verifier"] = code_verifier
        async with self._opened() as session:
            token = await self._call(
                session.fetch_token(
                    self.endpoints.token_url,
                    grant_type="authorization_code",
                    redirect_uri=self.redirect_uri,
                    **params,
                )
            )
        return self._grant(token, requested_scopes)

    async def refresh(self, refresh_token: str, *, current_scopes: list[str]) -> TokenGrant:
        async with self._opened() as session:
            token = await self._call(
                session.refresh_token(
                    self.endpoints.refresh_url or self.endpoints.token_url,
                    refresh_token=refresh_token,
                    **self.entry.token_params,
                )
            )
        # No new refresh token (providers that do not rotate): the storing side keeps the old
        # one (tokens.vault.TokenVault.sealed).
        return self._grant(token, current_scopes)

    async def pushed_authorization_url(
        self, *, state: str, scopes: list[str], code_verifier: str | None
    ) -> str:
        """RFC 9126: push the parameters of ``authorization_url`` and return the short URL."""
        assert self.endpoints.par_url is not None
        params = rfc9126.pushed_parameters(
            self.authorization_url(state=state, scopes=scopes, code_verifier=code_verifier),
            client_auth_method=self.entry.token_endpoint_auth_method,
        )
        answer = await self._post_authenticated(self.endpoints.par_url, params)
        pushed = rfc9126.parse_pushed_response(answer)
        return rfc9126.authorization_url(
            self.endpoints.authorization_url, self.credentials.client_id, pushed.request_uri
        )

    async def request_device_authorization(self, scopes: list[str]) -> rfc8628.DeviceAuthorization:
        """RFC 8628 §3.1, authenticated like a token request (the app is confidential)."""
        assert self.endpoints.device_authorization_url is not None
        params = {"scope": self.entry.join_scopes(scopes)} if scopes else {}
        answer = await self._post_authenticated(self.endpoints.device_authorization_url, params)
        return rfc8628.parse_device_authorization(answer)

    async def poll_device_token(
        self, device_code: str, *, requested_scopes: list[str]
    ) -> TokenGrant:
        """RFC 8628 §3.4. "Not yet" comes back as ``ProviderRejected`` (authorization_pending)."""
        async with self._opened() as session:
            token = await self._call(
                session.fetch_token(
                    self.endpoints.token_url,
                    grant_type=rfc8628.DEVICE_CODE_GRANT_TYPE,
                    device_code=device_code,
                    **self.entry.token_params,
                )
            )
        return self._grant(token, requested_scopes)

    async def _post_authenticated(self, url: str, data: dict[str, str]) -> dict[str, Any]:
        """A client-authenticated form POST to an endpoint that answers an OAuth JSON object.

        Authlib's token-answer reading does the rest: 5xx raises, an ``error`` member becomes
        ``OAuthError``, anything but a JSON object is refused — mapped by ``_call`` as always.
        """

        async def post() -> dict[str, Any]:
            async with self._opened() as session:
                response = await session.post(
                    url,
                    data=data,
                    auth=session.client_auth(self.entry.token_endpoint_auth_method),
                    headers={"Accept": "application/json"},
                )
                answer: dict[str, Any] = session.parse_response_token(response)
                return answer

        result: dict[str, Any] = await self._call(post())
        return result

    async def revoke(self, token: str, token_type_hint: str) -> None:
        """RFC 7009. A 200 is not proof that a live token died (§2.2), only that it is gone."""
        if not self.endpoints.revocation_url:
            raise ProviderBadAnswer("the provider has no revocation endpoint")
        async with self._opened() as session:
            response = await self._call(
                session.revoke_token(
                    self.endpoints.revocation_url, token=token, token_type_hint=token_type_hint
                )
            )
        if response.status_code >= 500:
            raise ProviderUnreachable(f"revocation answered {response.status_code}")
        if response.status_code >= 400:
            raise ProviderBadAnswer(f"revocation answered {response.status_code}")

    async def _call(self, awaitable: Any) -> Any:
        try:
            return await awaitable
        except OAuthError as exc:
            raise ProviderRejected(str(exc.error), exc.description) from None
        except httpx.HTTPStatusError as exc:
            status = exc.response.status_code
            if status >= 500 or status == 429:
                raise ProviderUnreachable(f"HTTP {status}", _retry_after(exc.response)) from None
            raise ProviderBadAnswer(f"HTTP {status} without an OAuth error") from None
        except httpx.TransportError as exc:
            raise ProviderUnreachable(type(exc).__name__) from None
        except ValueError:
            raise ProviderBadAnswer("the answer is not a JSON object") from None

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
        scope_text = lookup_text(token, "scope")
        scopes = _split_scopes(scope_text) if scope_text is not None else list(requested_scopes)
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
        )


def _auth_scheme(token_type: object) -> str:
    """The HTTP scheme the token is sent with. Slack labels its tokens ``bot`` or ``user``,
    which are no schemes: such tokens, like unlabelled ones, are bearer tokens."""
    if isinstance(token_type, str) and token_type.lower() in _AUTH_SCHEMES:
        return token_type
    return "Bearer"


@cache
def _tls_context() -> ssl.SSLContext:
    """One verifying TLS context for every provider call of the process.

    Each session would otherwise build its own, reading the whole CA bundle again: about 60 ms
    of CPU per refresh, more than the rest of the refresh together.
    """
    return httpx.create_ssl_context()


def shared_provider_transport() -> httpx.AsyncBaseTransport | None:
    """One keep-alive connection pool for every OAuth call of the process (``Runtime`` owns it).

    A fresh client per call opens a TCP (and TLS) connection per token request, and httpx's
    default pool costs as much CPU per request as the rest of a background refresh; this lean
    one (``oauth.transport``) a third of it (bench/RESULTS.md). None when the environment names
    proxies: httpx ignores its environment proxy settings for a client given a transport, so
    calls then keep a client (and pool) of their own as before.
    """
    if urllib.request.getproxies():
        return None
    return KeepAliveTransport(ssl_context=_tls_context())


def _split_scopes(text: str) -> list[str]:
    return [part for part in text.replace(",", " ").split() if part]


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return float(value) if value else None
    except ValueError:
        return None
