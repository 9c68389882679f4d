"""The RFC 8693 token exchange (SPEC §8): a JWT from an issuer the organization trusts, for the
provider token of one of that end user's connections, or for a ``pct_`` token of this service.

The caller (an agent runtime, an end user's MCP client) then holds no key that reaches every
end user: the exchange key can do nothing but exchange, and what it gets back is bound to the
end user the JWT names. Errors are RFC 6749 §5.2 bodies (``ExchangeError``), since OAuth
clients read them.
"""

from __future__ import annotations

import base64
import binascii
import math
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request

from personal_connectors.config import API_PREFIX
from personal_connectors.connections.repository import ConnectionRepository
from personal_connectors.exceptions import APIError, ValidationFailed
from personal_connectors.http.dependencies import presented_api_key
from personal_connectors.identity import pct
from personal_connectors.identity.repository import IdentityRepository
from personal_connectors.identity.service import (
    check_key_state,
    presented_key_hash,
    valid_end_user_id,
)
from personal_connectors.issuers.repository import TrustedIssuerRepository
from personal_connectors.models import APIKey, Connection, KeyKind, TrustedIssuer, utcnow
from personal_connectors.oauth.rfc7517 import KeySetUnavailable
from personal_connectors.oauth.rfc8414 import OIDC_SUFFIX, DiscoveryError
from personal_connectors.oauth.rfc8693 import (
    ACCESS_TOKEN_TYPE,
    GRANT_TYPE,
    SUBJECT_TOKEN_TYPES,
    ExchangeError,
    claimed_issuer,
    invalid_grant,
    verify_subject_token,
)
from personal_connectors.outbound.urls import check_url
from personal_connectors.rate_limits import FAILED_EXCHANGES
from personal_connectors.runtime import Runtime
from personal_connectors.tokens.exceptions import ReauthorizationRequired
from personal_connectors.tokens.service import TokenService

# ``audience`` that asks for a token of this service rather than of a provider.
SELF_AUDIENCE = "personal-connectors"


@dataclass(frozen=True)
class ClientCredentials:
    """How the caller authenticated: the key, and the client id when it used HTTP Basic."""

    key: str | None
    basic_client_id: str | None = None


def client_credentials(request: Request) -> ClientCredentials:
    """``Authorization: Basic`` (the key's id as the client id, the key as the secret, RFC 6749
    §2.3.1), else the key as every route reads it (``X-API-Key``, ``Authorization: Bearer``)."""
    scheme, _, value = (request.headers.get("authorization") or "").strip().partition(" ")
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            decoded = ""
        client_id, separator, secret = decoded.partition(":")
        if not separator:
            raise ExchangeError("invalid_client", "The Basic credentials are malformed.", 401)
        return ClientCredentials(unquote(secret), unquote(client_id))
    try:
        return ClientCredentials(presented_api_key(request))
    except APIError as exc:
        raise ExchangeError("invalid_client", exc.system_message, 401) from None


class TokenExchange:
    def __init__(self, session: AsyncSession, runtime: Runtime) -> None:
        self.session = session
        self.runtime = runtime
        # The rate limit's x-ratelimit-* headers for the answer, once counted.
        self.response_headers: list[tuple[bytes, bytes]] = []

    async def exchange(
        self, credentials: ClientCredentials, form: dict[str, str]
    ) -> dict[str, Any]:
        key = await self._client(credentials)
        if form.get("grant_type") != GRANT_TYPE:
            raise ExchangeError(
                "unsupported_grant_type", f"Only the token exchange grant ({GRANT_TYPE}) is taken."
            )
        subject_token = form.get("subject_token") or ""
        if not subject_token:
            raise ExchangeError("invalid_request", "subject_token is required.")
        if form.get("subject_token_type") not in SUBJECT_TOKEN_TYPES:
            raise ExchangeError(
                "invalid_request",
                "subject_token_type must be urn:ietf:params:oauth:token-type:jwt or "
                "urn:ietf:params:oauth:token-type:id_token.",
            )
        resource, audience = form.get("resource") or None, form.get("audience") or None
        if (resource is None) == (audience is None):
            raise ExchangeError(
                "invalid_request",
                f"Name exactly one of resource (a connection) and audience (an app key, or "
                f"{SELF_AUDIENCE!r} for a token of this service).",
            )
        assert key.organization_id is not None
        if self.runtime.rate_limits is not None:
            await self._failures_spent(key)
        try:
            end_user_id = await self._end_user_of(key.organization_id, subject_token)
        except ExchangeError as exc:
            if exc.error == "invalid_grant" and self.runtime.rate_limits is not None:
                await self._rate_limited(key, FAILED_EXCHANGES)
            raise
        if self.runtime.rate_limits is not None:
            await self._rate_limited(key, end_user_id)
        if audience == SELF_AUDIENCE:
            token, seconds = pct.mint(self.runtime.sealer, key.organization_id, end_user_id, key.id)
            return _answer(token, seconds)
        connection = await self._connection(key.organization_id, end_user_id, resource, audience)
        return await self._provider_token(key, connection)

    async def _client(self, credentials: ClientCredentials) -> APIKey:
        """The exchange or service key that authenticated; 401 ``invalid_client`` otherwise."""
        try:
            key_hash = presented_key_hash(credentials.key)
        except APIError as exc:
            raise ExchangeError("invalid_client", exc.system_message, 401) from None
        key = await IdentityRepository(self.session).get_api_key_by_hash(key_hash)
        if key is None or (
            credentials.basic_client_id is not None and credentials.basic_client_id != key.id
        ):
            raise ExchangeError("invalid_client", "The client credentials are not valid.", 401)
        try:
            check_key_state(key)
        except APIError as exc:
            raise ExchangeError("invalid_client", exc.system_message, 401) from None
        if key.kind == KeyKind.USER or key.organization_id is None:
            raise ExchangeError(
                "unauthorized_client", "A user key cannot exchange tokens; use an exchange key."
            )
        self.runtime.key_use.record(key.id)
        return key

    async def _rate_limited(self, key: APIKey, end_user_id: str) -> None:
        """The rate limits of SPEC §12, counted as a service key's: per (key, end user the JWT
        names) and for the key's total. Over them: 429 ``slow_down`` (the token endpoint's error
        for a client that asks too often, RFC 8628 §3.5) with ``Retry-After``."""
        assert self.runtime.rate_limits is not None
        headers, refused = await self.runtime.rate_limits.check(key.id, True, end_user_id)
        self.response_headers = headers
        if refused is not None:
            raise ExchangeError("slow_down", refused.system_message, 429, refused.headers)

    async def _failures_spent(self, key: APIKey) -> None:
        """429 ``slow_down`` before any verification when the key's failed exchanges already
        filled their bucket: a flood of bad subject tokens then costs a counter read each, not
        a signature check (nor a key set fetch for an unknown ``kid``). Failures are counted
        (``_rate_limited`` with ``FAILED_EXCHANGES``) once verification refused them."""
        assert self.runtime.rate_limits is not None
        headers, refused = await self.runtime.rate_limits.spent(key.id, True, FAILED_EXCHANGES)
        if refused is not None:
            self.response_headers = headers
            raise ExchangeError("slow_down", refused.system_message, 429, refused.headers)

    async def _end_user_of(self, organization_id: str, subject_token: str) -> str:
        """The end user a trusted issuer's JWT names (its prefix, then its subject claim)."""
        issuer_name = claimed_issuer(subject_token)
        issuer = await TrustedIssuerRepository(self.session).by_issuer(organization_id, issuer_name)
        if issuer is None:
            raise invalid_grant("The subject_token's issuer is not trusted by the organization.")
        jwks_uri = await self._jwks_uri(issuer)
        http = self.runtime.http

        async def keys_for(kid: str | None) -> Any:
            return await self.runtime.key_sets.get(http, jwks_uri, kid)

        try:
            verified = await verify_subject_token(
                subject_token,
                issuer=issuer.issuer,
                audience=issuer.audience,
                subject_claim=issuer.subject_claim,
                keys_for=keys_for,
            )
        except KeySetUnavailable as exc:
            raise _unavailable(f"The issuer's keys could not be read: {exc}") from None
        end_user_id = (issuer.end_user_prefix or "") + verified.subject
        if not valid_end_user_id(end_user_id):
            raise invalid_grant("The subject_token's subject is not a usable end_user_id.")
        return end_user_id

    async def _jwks_uri(self, issuer: TrustedIssuer) -> str:
        if issuer.jwks_uri is not None:
            return issuer.jwks_uri
        allow_internal = self.runtime.settings.loopback_allowed
        try:
            document = await self.runtime.metadata.get(
                self.runtime.http,
                issuer.issuer.rstrip("/") + OIDC_SUFFIX,
                issuer.issuer,
                allow_http=allow_internal,
            )
            jwks_uri = document.get("jwks_uri")
            if not isinstance(jwks_uri, str):
                raise DiscoveryError("the issuer's metadata names no jwks_uri")
            return check_url(jwks_uri, allow_internal=allow_internal, field="jwks_uri")
        except (DiscoveryError, ValidationFailed) as exc:
            raise _unavailable(f"The issuer's discovery failed: {exc}") from None

    async def _connection(
        self, organization_id: str, end_user_id: str, resource: str | None, audience: str | None
    ) -> Connection:
        end_user = await IdentityRepository(self.session).get_end_user(organization_id, end_user_id)
        connections = ConnectionRepository(self.session)
        found: list[Connection] = []
        if end_user is not None and resource is not None:
            connection_id = self._connection_id(resource)
            owned = await connections.get_owned(connection_id, end_user.user_id, organization_id)
            found = [owned] if owned is not None else []
        elif end_user is not None and audience is not None:
            found = list(
                await connections.list_owned(organization_id, end_user.user_id, app_key=audience)
            )
        if len(found) != 1:
            what = "that connection" if resource is not None else f"one connection of {audience}"
            raise ExchangeError("invalid_target", f"The end user has not {what}.")
        if not found[0].is_active:
            raise ExchangeError("invalid_target", "The connection is disabled.")
        return found[0]

    def _connection_id(self, resource: str) -> str:
        """``conn_…`` or this service's absolute URL of a connection."""
        prefix = f"{self.runtime.settings.base_url.rstrip('/')}{API_PREFIX}/"
        return resource.removeprefix(prefix) if resource.startswith(prefix) else resource

    async def _provider_token(self, key: APIKey, connection: Connection) -> dict[str, Any]:
        try:
            token = await TokenService(self.session, self.runtime).fresh_token(connection)
        except ReauthorizationRequired as exc:
            raise invalid_grant(
                f"The connection must be connected again: {exc.system_message}"
            ) from None
        except APIError as exc:  # every refusal in the OAuth form, never the envelope
            if exc.status < 500:
                raise invalid_grant(exc.system_message) from None
            raise _unavailable("The provider could not hand out a token now; retry.") from None
        self.runtime.token_audit.record(
            connection.id, connection.organization_id, key.id, refreshed=token.refreshed
        )
        seconds = None
        if token.expires_at is not None:
            seconds = max(0, math.floor((token.expires_at - utcnow()).total_seconds()))
        return _answer(token.access_token, seconds)


def _answer(access_token: str, expires_in: int | None) -> dict[str, Any]:
    """RFC 8693 §2.2.1."""
    body: dict[str, Any] = {
        "access_token": access_token,
        "issued_token_type": ACCESS_TOKEN_TYPE,
        "token_type": "Bearer",
    }
    if expires_in is not None:
        body["expires_in"] = expires_in
    return body


def _unavailable(description: str) -> ExchangeError:
    return ExchangeError("temporarily_unavailable", description, 503)
