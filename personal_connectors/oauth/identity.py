"""Reading who the connected account is (id, email, name) from the provider.

The account id is what makes a second connection of the same account a re-authorization rather
than a duplicate, so a provider answer without one is an error, never a guess.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import httpx

from personal_connectors.oauth.client import ClientCredentials, TokenGrant
from personal_connectors.oauth.endpoints import ProviderEndpoints
from personal_connectors.oauth.errors import (
    DestinationNotAllowed,
    ProviderBadAnswer,
    ProviderUnreachable,
)
from personal_connectors.outbound.guard import DestinationRefused
from personal_connectors.providers.paths import lookup, lookup_text
from personal_connectors.providers.schema import (
    EmailFallback,
    IdentityMapping,
    ProviderEntry,
)
from personal_connectors.providers.templating import fill, token_headers

logger = logging.getLogger(__name__)

DEFAULT_MAPPING = IdentityMapping()  # OpenID userinfo claims: sub, email, name


@dataclass(frozen=True)
class AccountIdentity:
    account_id: str
    email: str | None
    name: str | None


def _first_text(document: object, paths: str | list[str] | None) -> str | None:
    """The first non-empty value among ``paths`` (a single path or fallbacks in order)."""
    for path in [paths] if isinstance(paths, str) or paths is None else paths:
        value = lookup_text(document, path)
        if value:
            return value
    return None


def identity_from_document(document: object, mapping: IdentityMapping) -> AccountIdentity:
    """The account in an identity answer, as ``mapping`` places it (no id: a bad answer)."""
    account_id = _first_text(document, mapping.id_path)
    if not account_id:
        raise ProviderBadAnswer("the identity answer has no account id")
    return AccountIdentity(
        account_id=account_id,
        email=_first_text(document, mapping.email_path),
        name=_first_text(document, mapping.name_path),
    )


def _body(mapping: IdentityMapping, values: dict[str, str]) -> dict[str, Any] | None:
    """The declared body with its service values filled (top-level strings only: a GraphQL
    query's own braces stay as written)."""
    if mapping.body is None:
        return None
    filled: dict[str, Any] = {}
    for key, value in mapping.body.items():
        if isinstance(value, str):
            for name, actual in values.items():
                value = value.replace(f"{{{name}}}", actual)
        filled[key] = value
    return filled


async def _identity_answer(
    mapping: IdentityMapping,
    url: str,
    grant: TokenGrant,
    http: httpx.AsyncClient,
    credentials: ClientCredentials | None,
) -> object:
    values = {"access_token": grant.access_token}
    if mapping.uses_client_credentials:
        if credentials is None:
            raise ProviderBadAnswer("the identity call needs the app's client credentials")
        values |= {"client_id": credentials.client_id, "client_secret": credentials.client_secret}
    headers = token_headers(
        mapping.headers, grant.access_token, bearer=not mapping.body_carries_token
    )
    body = _body(mapping, values)
    payload: dict[str, Any] = {}
    if body is not None:
        payload["data" if mapping.body_format == "form" else "json"] = body
    url = fill(url, {"access_token": grant.access_token})
    try:
        response = await http.request(mapping.method, url, headers=headers, **payload)
    except DestinationRefused as exc:
        raise DestinationNotAllowed(exc.reason) from None
    except httpx.TransportError as exc:
        raise ProviderUnreachable(type(exc).__name__) from None
    if response.status_code >= 500:
        raise ProviderUnreachable(f"identity call answered {response.status_code}")
    if response.status_code >= 400:
        raise ProviderBadAnswer(f"identity call answered {response.status_code}")
    try:
        return response.json()
    except ValueError:
        raise ProviderBadAnswer("identity answer is not JSON") from None


async def _fallback_email(
    call: EmailFallback, url: str, grant: TokenGrant, http: httpx.AsyncClient
) -> str | None:
    """The first listed address whose ``require`` flags are all true, or None on any failure:
    the e-mail is descriptive, so its absence never refuses a connection."""
    try:
        response = await http.get(url, headers=token_headers(call.headers, grant.access_token))
        if response.status_code >= 300:
            logger.info("identity e-mail call answered %s", response.status_code)
            return None
        document = response.json()
    except (httpx.HTTPError, DestinationRefused, ValueError) as exc:
        logger.info("identity e-mail call failed (%s)", type(exc).__name__)
        return None
    items = lookup(document, call.list_path) if call.list_path else document
    for item in items if isinstance(items, list) else []:
        if isinstance(item, dict) and all(item.get(flag) is True for flag in call.require):
            email = lookup_text(item, call.email_field)
            if email:
                return email
    return None


async def read_identity(
    entry: ProviderEntry,
    endpoints: ProviderEndpoints,
    grant: TokenGrant,
    http: httpx.AsyncClient,
    credentials: ClientCredentials | None = None,
) -> AccountIdentity:
    """``credentials``: the app's, for identity calls that authenticate the client (HubSpot)."""
    mapping = entry.userinfo or DEFAULT_MAPPING
    if mapping.from_token_response:
        identity = identity_from_document(grant.raw, mapping)
    else:
        url = endpoints.userinfo_url
        if not url:
            raise ProviderBadAnswer("the provider declares no identity call")
        document = await _identity_answer(mapping, url, grant, http, credentials)
        identity = identity_from_document(document, mapping)
    if identity.email is None and mapping.email_fallback and endpoints.email_fallback_url:
        email = await _fallback_email(
            mapping.email_fallback, endpoints.email_fallback_url, grant, http
        )
        identity = AccountIdentity(identity.account_id, email, identity.name)
    return identity
