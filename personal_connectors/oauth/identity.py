"""Reading who the connected account is (id, email, name) from the provider.

The account id is what makes a second connection of the same account a re-authorization rather
than a duplicate, so a provider answer without one is an error, never a guess.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from personal_connectors.oauth.client import TokenGrant
from personal_connectors.oauth.endpoints import ProviderEndpoints
from personal_connectors.oauth.errors import (
    DestinationNotAllowed,
    ProviderBadAnswer,
    ProviderUnreachable,
)
from personal_connectors.outbound.guard import DestinationRefused
from personal_connectors.providers.paths import lookup_text
from personal_connectors.providers.schema import IdentityMapping, ProviderEntry
from personal_connectors.providers.templating import fill, token_headers

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


async def read_identity(
    entry: ProviderEntry,
    endpoints: ProviderEndpoints,
    grant: TokenGrant,
    http: httpx.AsyncClient,
) -> AccountIdentity:
    mapping = entry.userinfo or DEFAULT_MAPPING
    if mapping.from_token_response:
        return identity_from_document(grant.raw, mapping)
    url = endpoints.userinfo_url
    if not url:
        raise ProviderBadAnswer("the provider declares no identity call")
    headers = token_headers(mapping.headers, grant.access_token)
    url = fill(url, {"access_token": grant.access_token})
    try:
        response = await http.request(mapping.method, url, headers=headers, json=mapping.body)
    except DestinationRefused as exc:
        raise DestinationNotAllowed(exc.reason) from None
    except httpx.TransportError as exc:
        raise ProviderUnreachable(type(exc).__name__) from None
    if response.status_code >= 500:
        raise ProviderUnreachable(f"identity call answered {response.status_code}")
    if response.status_code >= 400:
        raise ProviderBadAnswer(f"identity call answered {response.status_code}")
    try:
        document = response.json()
    except ValueError:
        raise ProviderBadAnswer("identity answer is not JSON") from None
    return identity_from_document(document, mapping)
