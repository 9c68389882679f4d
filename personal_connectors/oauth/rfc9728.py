"""OAuth 2.0 Protected Resource Metadata (RFC 9728): which authorization server protects a
resource, as the resource itself says.

A resource that refuses an unauthenticated request names its metadata document in the
``resource_metadata`` parameter of its ``WWW-Authenticate`` challenge (§5.1); without one, the
document is looked for at the well-known locations built from the resource's URL (§3.1): the
path-suffixed one first, then the root one (the MCP authorization spec's order). The document's
``resource`` must be the resource we asked about (§3.3): otherwise another server could send us
to an authorization server of its choosing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from personal_connectors.oauth.rfc8707 import canonical_resource
from personal_connectors.outbound.guard import DestinationRefused

WELL_KNOWN = "/.well-known/oauth-protected-resource"
# One auth-param of a challenge (RFC 9110 §11.2): a token, "=", a token or a quoted string.
_AUTH_PARAM = re.compile(r'([A-Za-z0-9_.-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^\s,"]+)')
MAX_DOCUMENT_BYTES = 64 * 1024


class ResourceMetadataError(RuntimeError):
    """The metadata cannot be trusted or used; the message is safe to show."""


class ResourceMetadataUnavailable(ResourceMetadataError):
    """The document could not be fetched: the server did not answer, or answered 5xx."""


class ResourceMetadataRefused(ResourceMetadataError):
    """An address on the way is not one the outbound rule lets the service call."""


@dataclass(frozen=True)
class ProtectedResource:
    resource: str
    authorization_servers: tuple[str, ...]
    scopes_supported: tuple[str, ...]


def challenge_params(header: str | None) -> dict[str, str]:
    """The auth-params of a ``WWW-Authenticate`` value (the first Bearer challenge's, or the
    header's own when it names no scheme we know), unquoted."""
    if not header:
        return {}
    params: dict[str, str] = {}
    for name, value in _AUTH_PARAM.findall(header):
        if value.startswith('"'):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        params.setdefault(name.lower(), value)
    return params


def well_known_urls(resource: str) -> list[str]:
    """The metadata locations of ``resource``, in the order they are tried."""
    parts = urlsplit(resource)
    path = parts.path.rstrip("/")
    found = [urlunsplit((parts.scheme, parts.netloc, WELL_KNOWN + path, "", ""))] if path else []
    root = urlunsplit((parts.scheme, parts.netloc, WELL_KNOWN, "", ""))
    return [*found, root]


async def discover(
    http: httpx.AsyncClient, resource: str, challenge: str | None, *, call_seconds: float
) -> ProtectedResource:
    """The checked metadata of ``resource`` (its canonical URI), found from ``challenge``."""
    named = challenge_params(challenge).get("resource_metadata")
    locations = [named] if named else well_known_urls(resource)
    for location in locations:
        document = await _fetch(http, location, call_seconds)
        if document is not None:
            return parse(document, resource)
    raise ResourceMetadataError(
        "the MCP server asks for authorization but publishes no protected resource metadata "
        "(RFC 9728) to say where"
    )


async def _fetch(http: httpx.AsyncClient, url: str, call_seconds: float) -> Any:
    """The JSON document at ``url``; None when there is none there (4xx)."""
    try:
        response = await http.get(url, headers={"Accept": "application/json"}, timeout=call_seconds)
    except DestinationRefused as exc:
        raise ResourceMetadataRefused(
            f"the protected resource metadata's address is not allowed ({exc.reason})"
        ) from None
    except (httpx.HTTPError, ValueError) as exc:
        raise ResourceMetadataUnavailable(
            f"the protected resource metadata could not be fetched ({type(exc).__name__})"
        ) from None
    if 400 <= response.status_code < 500:
        return None
    if response.status_code != 200 or len(response.content) > MAX_DOCUMENT_BYTES:
        raise ResourceMetadataUnavailable(
            f"the protected resource metadata answered HTTP {response.status_code}"
        )
    try:
        return response.json()
    except ValueError:
        raise ResourceMetadataError("the protected resource metadata is not JSON") from None


def parse(document: Any, resource: str) -> ProtectedResource:
    """RFC 9728 §2 and §3.3: ``resource`` must be the one asked about; at least one
    authorization server must be named."""
    if not isinstance(document, dict):
        raise ResourceMetadataError("the protected resource metadata is not a JSON object")
    named = document.get("resource")
    try:
        same = isinstance(named, str) and canonical_resource(named) == resource
    except ValueError:
        same = False
    if not same:
        raise ResourceMetadataError(
            "the protected resource metadata describes another resource than the MCP server"
        )
    servers = document.get("authorization_servers")
    if (
        not isinstance(servers, list)
        or not servers
        or not all(isinstance(item, str) and item for item in servers)
    ):
        raise ResourceMetadataError("the protected resource metadata names no authorization server")
    scopes = document.get("scopes_supported")
    return ProtectedResource(
        resource,
        tuple(servers),
        tuple(s for s in scopes if isinstance(s, str)) if isinstance(scopes, list) else (),
    )
