"""Revoking a connection's grant at the provider when the user disconnects.

RFC 7009 where the provider has a revocation endpoint (refresh token first: at most providers
that ends the whole grant), or the provider's own call where the catalog declares one. Every
attempt is bounded in time and its outcome returned for the audit trail; a failure never blocks
the disconnect.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass

import httpx

from personal_connectors.oauth.client import ClientCredentials, OAuthClient
from personal_connectors.oauth.errors import ProviderFailure
from personal_connectors.outbound.guard import DestinationRefused
from personal_connectors.providers.answers import says_not_ok
from personal_connectors.providers.schema import RevocationCall
from personal_connectors.providers.templating import fill

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RevocationOutcome:
    token_type: str
    method: str
    revoked: bool
    reason: str | None = None

    def as_detail(self) -> dict[str, object]:
        return {
            "token_type": self.token_type,
            "method": self.method,
            "revoked": self.revoked,
            "reason": self.reason,
        }


async def _provider_call(
    call: RevocationCall,
    http: httpx.AsyncClient,
    credentials: ClientCredentials,
    access_token: str | None,
    refresh_token: str | None,
    metadata: Mapping[str, str],
) -> RevocationOutcome:
    token = access_token if call.token == "access_token" else refresh_token
    if token is None:
        return RevocationOutcome(call.token, "provider_call", False, "no token to revoke")
    values = {
        **metadata,
        "client_id": credentials.client_id,
        "client_secret": credentials.client_secret,
        "access_token": access_token or "",
        "refresh_token": refresh_token or "",
        "token": token,
    }

    def filled(part: Mapping[str, str]) -> dict[str, str]:
        return {key: fill(value, values) for key, value in part.items()}

    headers = {"Accept": "application/json", **filled(call.headers)}
    auth: httpx.BasicAuth | None = None
    if call.auth == "client_basic":
        auth = httpx.BasicAuth(credentials.client_id, credentials.client_secret)
    elif call.auth == "bearer":
        headers["Authorization"] = f"Bearer {token}"
    body = filled(call.body)
    request_kwargs: dict[str, object] = {}
    if body:
        request_kwargs["json" if call.body_format == "json" else "data"] = body
    if call.query:
        request_kwargs["params"] = filled(call.query)
    response = await http.request(
        call.method,
        fill(call.url, values),
        headers=headers,
        auth=auth,
        **request_kwargs,  # type: ignore[arg-type]
    )
    # 404: the grant is already gone at the provider, which is what we wanted.
    if (response.status_code < 300 or response.status_code == 404) and not says_not_ok(response):
        return RevocationOutcome(call.token, "provider_call", True)
    return RevocationOutcome(call.token, "provider_call", False, f"HTTP {response.status_code}")


async def _rfc7009(
    client: OAuthClient, access_token: str | None, refresh_token: str | None
) -> list[RevocationOutcome]:
    outcomes = []
    for token_type, token in (("refresh_token", refresh_token), ("access_token", access_token)):
        if token is None:
            continue
        try:
            await client.revoke(token, token_type)
            outcomes.append(RevocationOutcome(token_type, "rfc7009", True))
        except ProviderFailure as exc:
            outcomes.append(RevocationOutcome(token_type, "rfc7009", False, str(exc)))
    return outcomes


async def revoke_grant(
    client: OAuthClient,
    http: httpx.AsyncClient,
    *,
    access_token: str | None,
    refresh_token: str | None,
    time_limit: float,
    metadata: Mapping[str, str] | None = None,
) -> list[RevocationOutcome]:
    entry = client.entry
    try:
        async with asyncio.timeout(time_limit):
            if entry.revocation is not None:
                return [
                    await _provider_call(
                        entry.revocation,
                        http,
                        client.credentials,
                        access_token,
                        refresh_token,
                        metadata or {},
                    )
                ]
            if client.endpoints.revocation_url:
                return await _rfc7009(client, access_token, refresh_token)
            return [RevocationOutcome("grant", "none", False, "the provider offers no revocation")]
    except TimeoutError:
        return [RevocationOutcome("grant", "timeout", False, f"no answer within {time_limit:.0f}s")]
    except DestinationRefused as exc:
        reason = f"not an allowed destination ({exc.reason})"
        return [RevocationOutcome("grant", "provider_call", False, reason)]
    except httpx.HTTPError as exc:
        return [RevocationOutcome("grant", "provider_call", False, type(exc).__name__)]
    except KeyError as exc:  # a metadata value this connection never received
        return [RevocationOutcome("grant", "provider_call", False, f"no value for {exc}")]
