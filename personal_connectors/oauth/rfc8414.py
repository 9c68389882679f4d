"""Authorization-server metadata (RFC 8414) and OpenID discovery, with the issuer check.

The issuer in the document must be the one the well-known URL was built from (RFC 8414 §3.3,
OpenID Discovery §4.3); otherwise an attacker who controls the document could point us at
their own endpoints.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from authlib.oauth2.rfc8414 import get_well_known_url

from personal_connectors.outbound.guard import DestinationRefused

OIDC_SUFFIX = "/.well-known/openid-configuration"
OAUTH_WELL_KNOWN = "/.well-known/oauth-authorization-server"
CACHE_SECONDS = 3600.0


class DiscoveryError(RuntimeError):
    """The metadata document is not trustworthy (wrong issuer, missing endpoints)."""


class MetadataUnavailable(DiscoveryError):
    """The metadata document could not be fetched: the provider may just be down."""


def expected_issuer(discovery_url: str) -> str:
    """The issuer a discovery URL was derived from."""
    parts = urlsplit(discovery_url)
    path = parts.path
    if path.endswith(OIDC_SUFFIX):
        issuer_path = path[: -len(OIDC_SUFFIX)]
    elif path.startswith(OAUTH_WELL_KNOWN):
        issuer_path = path[len(OAUTH_WELL_KNOWN) :]
    else:
        raise DiscoveryError(
            "discovery_url must end in /.well-known/openid-configuration "
            "or start with /.well-known/oauth-authorization-server"
        )
    return urlunsplit((parts.scheme, parts.netloc, issuer_path, "", ""))


# The endpoints the service calls or sends a browser to: https unless the operator allows http.
ENDPOINT_FIELDS = (
    "authorization_endpoint",
    "token_endpoint",
    "userinfo_endpoint",
    "revocation_endpoint",
    "device_authorization_endpoint",
    "pushed_authorization_request_endpoint",
)


def verify_metadata(
    discovery_url: str, document: Any, declared_issuer: str | None, *, allow_http: bool = False
) -> dict[str, Any]:
    if not isinstance(document, dict):
        raise DiscoveryError("metadata document is not a JSON object")
    issuer = document.get("issuer")
    if issuer != expected_issuer(discovery_url):
        raise DiscoveryError("metadata issuer does not match the discovery URL")
    if declared_issuer is not None and issuer != declared_issuer:
        raise DiscoveryError("metadata issuer does not match the catalog's issuer")
    for field in ("authorization_endpoint", "token_endpoint"):
        if not isinstance(document.get(field), str):
            raise DiscoveryError(f"metadata has no {field}")
    for field in ENDPOINT_FIELDS:
        value = document.get(field)
        if value is None:
            continue
        scheme = urlsplit(value).scheme if isinstance(value, str) else ""
        if scheme != "https" and not (allow_http and scheme == "http"):
            raise DiscoveryError(f"metadata {field} is not an https URL")
    return document


class MetadataCache:
    """Per-process cache of verified metadata documents, so discovery is not on every request."""

    def __init__(self, ttl: float = CACHE_SECONDS) -> None:
        self._ttl = ttl
        self._documents: dict[str, tuple[float, dict[str, Any]]] = {}

    async def get(
        self,
        http: httpx.AsyncClient,
        discovery_url: str,
        declared_issuer: str | None,
        *,
        allow_http: bool = False,
    ) -> dict[str, Any]:
        cached = self._documents.get(discovery_url)
        now = time.monotonic()
        if cached and now - cached[0] < self._ttl:
            return cached[1]
        try:
            response = await http.get(discovery_url, headers={"Accept": "application/json"})
            response.raise_for_status()
            document = response.json()
        except DestinationRefused as exc:
            raise DiscoveryError(
                f"its address is not an allowed destination ({exc.reason})"
            ) from None
        except (httpx.HTTPError, ValueError) as exc:
            raise MetadataUnavailable(
                f"metadata could not be fetched ({type(exc).__name__})"
            ) from exc
        verified = verify_metadata(discovery_url, document, declared_issuer, allow_http=allow_http)
        self._documents[discovery_url] = (now, verified)
        return verified


def metadata_urls(issuer: str) -> list[str]:
    """Where an issuer's metadata is, in the order tried: RFC 8414 §3.1 (the well-known suffix
    inserted before the issuer's path), then OpenID discovery (appended to it)."""
    return [get_well_known_url(issuer, external=True), issuer.rstrip("/") + OIDC_SUFFIX]


async def issuer_metadata(
    http: httpx.AsyncClient, cache: MetadataCache, issuer: str, *, allow_http: bool = False
) -> dict[str, Any]:
    """The verified metadata of the authorization server ``issuer`` names, whose ``issuer``
    must be exactly that value. A location that cannot be fetched makes way for the next one;
    a document that is refused (another issuer) ends the search."""
    unavailable: MetadataUnavailable | None = None
    for url in metadata_urls(issuer):
        try:
            return await cache.get(http, url, issuer, allow_http=allow_http)
        except MetadataUnavailable as exc:
            unavailable = exc
    assert unavailable is not None
    raise unavailable
