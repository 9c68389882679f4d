"""Which headers cross the proxy (SPEC §9).

To the provider: the caller's headers less hop-by-hop ones (RFC 9110 §7.6.1, and any the
``Connection`` header names), ``Host``, ``Cookie``, the caller's credentials for this service
(``Authorization``, ``X-API-Key``) and the service's own ``X-Connectors-*``; then the
connection's credentials as the entry declares.

Back to the caller: the provider's headers less hop-by-hop ones and ``Set-Cookie``. Headers the
service sets on every answer (``X-Request-ID``, ``Cache-Control: no-store``, ``Date``) and the
service's ``x-ratelimit-*`` and ``X-Connectors-*`` win; the provider's of those names come back
as ``X-Connectors-Upstream-<name>``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
# Never forwarded to the provider: who the caller is to this service, and what httpx sets
# from the body it sends (``Content-Length``; ``Expect`` was the caller's to this service).
NOT_FORWARDED = frozenset(
    {"host", "cookie", "authorization", "x-api-key", "content-length", "expect"}
)
SERVICE_PREFIX = "x-connectors-"
NOT_RETURNED = frozenset({"set-cookie", "set-cookie2"})
# The service's own on every answer (http.context, the HTTP server's Date) ...
SERVICE_OWNED = frozenset({"x-request-id", "cache-control", "date"})
# ... and its rate-limit headers.
SERVICE_OWNED_PREFIX = "x-ratelimit-"
UPSTREAM_PREFIX = "X-Connectors-Upstream-"
PROXY_MARK = ("x-connectors-proxy", "upstream")

Headers = list[tuple[str, str]]


def _connection_named(headers: Iterable[tuple[str, str]]) -> set[str]:
    """The header names a ``Connection`` header lists (hop-by-hop for this one message)."""
    named: set[str] = set()
    for name, value in headers:
        if name.lower() == "connection":
            named.update(item.strip().lower() for item in value.split(",") if item.strip())
    return named


def to_provider(headers: Iterable[tuple[str, str]], credentials: Mapping[str, str]) -> Headers:
    """The headers of the call to the provider: the caller's that may cross, then the
    connection's credentials (a caller's header of the same name is dropped)."""
    given = list(headers)
    dropped = HOP_BY_HOP | NOT_FORWARDED | _connection_named(given)
    dropped |= {name.lower() for name in credentials}
    kept = [
        (name, value)
        for name, value in given
        if name.lower() not in dropped and not name.lower().startswith(SERVICE_PREFIX)
    ]
    if not any(name.lower() == "accept-encoding" for name, _ in kept):
        # The caller asked for no encoding: it gets the body as the provider sends it, so ask
        # for none (the shared client would ask for gzip).
        kept.append(("Accept-Encoding", "identity"))
    return [*kept, *credentials.items()]


def to_caller(headers: Iterable[tuple[str, str]]) -> Headers:
    """The provider's answer headers as the caller gets them, marked as the provider's."""
    given = list(headers)
    dropped = HOP_BY_HOP | NOT_RETURNED | _connection_named(given)
    returned: Headers = []
    for name, value in given:
        lower = name.lower()
        if lower in dropped:
            continue
        if (
            lower in SERVICE_OWNED
            or lower.startswith(SERVICE_OWNED_PREFIX)
            or lower.startswith(SERVICE_PREFIX)  # (no provider speaks for the service)
        ):
            returned.append((f"{UPSTREAM_PREFIX}{name}", value))
        else:
            returned.append((name, value))
    returned.append(PROXY_MARK)
    return returned
