"""Resource indicators (RFC 8707): the canonical URI of a protected resource.

A client names the resource it wants a token for with ``resource`` on the authorization, token
and refresh requests; the authorization server puts it in the token's audience, so a token for
one MCP server is refused by every other one. The MCP authorization spec asks for the server's
canonical URI: an absolute URI without fragment, scheme and host in lower case, no default port,
and no trailing slash on an empty path.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

PARAMETER = "resource"
_DEFAULT_PORTS = {"http": 80, "https": 443}


def canonical_resource(url: str) -> str:
    """``url`` in canonical form (ValueError when it is no absolute http(s) URI)."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if scheme not in _DEFAULT_PORTS or not host:
        raise ValueError("a resource is an absolute http(s) URI")
    port = parts.port
    netloc = f"[{host}]" if ":" in host else host
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        netloc = f"{netloc}:{port}"
    path = parts.path if parts.path != "/" else ""
    return urlunsplit((scheme, netloc, path, parts.query, ""))


def resource_params(resource: str) -> dict[str, str]:
    """The parameter that binds a request (authorization, token, refresh) to ``resource``."""
    return {PARAMETER: resource}
