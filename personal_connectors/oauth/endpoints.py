"""One provider's endpoints for one connection: static from the catalog, or discovered."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import httpx

from personal_connectors.oauth.rfc8414 import MetadataCache
from personal_connectors.providers.schema import ProviderEntry
from personal_connectors.providers.templating import fill


@dataclass(frozen=True)
class ProviderEndpoints:
    authorization_url: str
    token_url: str
    revocation_url: str | None = None
    userinfo_url: str | None = None
    device_authorization_url: str | None = None
    par_url: str | None = None
    require_par: bool = False
    issuer: str | None = None
    # RFC 9207: when the server advertises `iss`, a response without it must be refused.
    iss_parameter_supported: bool = False
    # Where refresh_token grants go when the provider refreshes elsewhere (Figma).
    refresh_url: str | None = None
    # The identity's second call for the e-mail (GitHub's /user/emails), filled like the rest.
    email_fallback_url: str | None = None


def _filled(template: str | None, values: Mapping[str, str]) -> str | None:
    return None if template is None else fill(template, values)


async def resolve_endpoints(
    entry: ProviderEntry,
    params: Mapping[str, str],
    http: httpx.AsyncClient,
    metadata: MetadataCache,
    *,
    allow_http: bool = False,
) -> ProviderEndpoints:
    """Catalog fields win over discovered ones, so an operator can pin an endpoint.

    ``allow_http``: discovered endpoints may be plain http (the operator's development setting);
    otherwise a document naming one is refused (``DiscoveryError``).
    """
    static = {
        "authorization_url": _filled(entry.authorization_url, params),
        "token_url": _filled(entry.token_url, params),
        "revocation_url": _filled(entry.revocation_url, params),
        "userinfo_url": _filled(entry.userinfo.url if entry.userinfo else None, params),
        "device_authorization_url": _filled(entry.device_authorization_url, params),
        "par_url": _filled(entry.par_url, params),
        "refresh_url": _filled(entry.refresh_url, params),
        "email_fallback_url": _filled(
            entry.userinfo.email_fallback.url
            if entry.userinfo and entry.userinfo.email_fallback
            else None,
            params,
        ),
    }
    issuer = _filled(entry.issuer, params)
    if entry.discovery_url is None:
        assert static["token_url"]  # guaranteed by the schema (and the authorization URL ...)
        return ProviderEndpoints(
            # ... but for the minting modes (SPEC §10), which have no authorization step
            authorization_url=static["authorization_url"] or "",
            token_url=static["token_url"],
            revocation_url=static["revocation_url"],
            userinfo_url=static["userinfo_url"],
            device_authorization_url=static["device_authorization_url"],
            par_url=static["par_url"],
            issuer=issuer,
            refresh_url=static["refresh_url"],
            email_fallback_url=static["email_fallback_url"],
        )
    document = await metadata.get(
        http, fill(entry.discovery_url, params), issuer, allow_http=allow_http
    )
    return ProviderEndpoints(
        authorization_url=static["authorization_url"] or document["authorization_endpoint"],
        token_url=static["token_url"] or document["token_endpoint"],
        revocation_url=static["revocation_url"] or document.get("revocation_endpoint"),
        userinfo_url=static["userinfo_url"] or document.get("userinfo_endpoint"),
        device_authorization_url=static["device_authorization_url"]
        or document.get("device_authorization_endpoint"),
        par_url=static["par_url"] or document.get("pushed_authorization_request_endpoint"),
        require_par=bool(document.get("require_pushed_authorization_requests", False)),
        issuer=document["issuer"],
        iss_parameter_supported=bool(
            document.get("authorization_response_iss_parameter_supported", False)
        ),
        refresh_url=static["refresh_url"],
        email_fallback_url=static["email_fallback_url"],
    )
