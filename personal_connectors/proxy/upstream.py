"""Where a proxied call goes: the entry's ``api_base_url`` filled from the connection's checked
values, joined with a ``{path}`` that cannot leave it, and the caller's query less the service's
own parameters (SPEC §9).

Every value filled into ``api_base_url`` is checked against the entry's pattern on every call
(integration params against theirs, provider metadata against ``metadata_patterns``; the answer
for a value and pattern is remembered, as is the URL they fill): metadata
may have come through the browser at the callback, and a pattern may have been tightened since
the value was stored. A URL whose host a value chose must then pass the outbound rule (https,
no internal address literal; the outbound guard judges the address connected to as well); a
host the operator wrote is trusted as written.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote, unquote_plus, urlencode

import httpx

from personal_connectors.exceptions import ValidationFailed
from personal_connectors.http.dependencies import CALLER_QUERY
from personal_connectors.outbound.urls import check_url
from personal_connectors.providers.schema import LEADING_ORIGIN, TEMPLATE_VARIABLE, ProviderEntry
from personal_connectors.providers.templating import fill
from personal_connectors.proxy.exceptions import NoApiBaseUrl, UnsafeDestination, UnsafePath

# A scheme and a slash (``https://…``, ``file:/…``), or a scheme browsers and servers act on.
_ABSOLUTE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:[/\\]")
_WEB_SCHEME = re.compile(r"^(https?|wss?|ftp|file|data|javascript):", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_AUTHORITY = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://([^/?#]*)")
# Percent-decoding rounds a path is judged in (``%252e%252e`` is ``..`` after two); a path
# still changing after that many is refused.
_DECODE_ROUNDS = 4


def check_path(raw: str) -> str:
    """``raw`` (the ``{path}`` as sent, still percent-encoded) when it stays under the base
    URL in every decoding; ``UnsafePath`` otherwise. Forwarded as sent (GitLab's
    ``projects/group%2Frepo`` keeps its encoded slash)."""
    forms = [raw]
    for _ in range(_DECODE_ROUNDS):
        decoded = unquote(forms[-1])
        if decoded == forms[-1]:
            break
        forms.append(decoded)
    else:
        raise UnsafePath("is percent-encoded too many times over")
    for form in forms:
        segments = form.split("/")
        if form.startswith("/"):
            raise UnsafePath("starts with `/` (`//host` names another host)")
        if "\\" in form:
            raise UnsafePath("holds a backslash")
        if _CONTROL.search(form):
            raise UnsafePath("holds control characters")
        if _ABSOLUTE.match(form) or _WEB_SCHEME.match(form):
            raise UnsafePath("is an absolute URL")
        if any(segment.split(";", 1)[0] == ".." for segment in segments):
            raise UnsafePath("holds a `..` segment")
        if "@" in segments[0]:
            raise UnsafePath("holds `@` before its first `/`")
    return raw


def _host_variables(template: str) -> set[str]:
    """The variables that choose the host: a leading whole-origin one, or any in the authority."""
    origin = LEADING_ORIGIN.match(template)
    if origin:
        return {origin.group(1)}
    authority = _AUTHORITY.match(template)
    return set(TEMPLATE_VARIABLE.findall(authority.group(1))) if authority else set()


def base_url(
    entry: ProviderEntry,
    integration_params: Mapping[str, Any] | None,
    provider_metadata: Mapping[str, Any] | None,
    *,
    loopback_allowed: bool,
) -> str:
    """The connection's API base URL, without a trailing slash."""
    template = entry.api_base_url
    if template is None:
        raise NoApiBaseUrl(entry.key)
    filled: list[tuple[str, str, str, str]] = []
    for name in _variables(template):
        if name in entry.metadata_patterns:
            value = (provider_metadata or {}).get(name)
            pattern, source = entry.metadata_patterns[name], "provider metadata"
        else:  # the schema admits only these two kinds
            spec = entry.integration_params[name]
            value = (integration_params or {}).get(name, spec.default)
            pattern, source = spec.pattern, "integration param"
        if not isinstance(value, str):
            raise _unmatched(source, name)
        filled.append((name, value, pattern, source))
    return _rendered(template, tuple(filled), loopback_allowed)


@functools.cache
def _variables(template: str) -> tuple[str, ...]:
    return tuple(TEMPLATE_VARIABLE.findall(template))


@functools.lru_cache(maxsize=4096)
def _rendered(
    template: str, filled: tuple[tuple[str, str, str, str], ...], loopback_allowed: bool
) -> str:
    """``template`` filled with checked values: a function of its arguments only (the values
    with their patterns), so each connection's answer is worked out once, not on every call."""
    for name, value, pattern, source in filled:
        if not re.fullmatch(pattern, value):
            raise _unmatched(source, name)
    url = fill(template, {name: value for name, value, _, _ in filled})
    if _host_variables(template):
        try:
            url = check_url(url, allow_internal=loopback_allowed, field="API address")
        except ValidationFailed as exc:
            raise UnsafeDestination(exc.system_message.rstrip(".")) from None
    return url.rstrip("/")


def _unmatched(source: str, name: str) -> UnsafeDestination:
    return UnsafeDestination(
        f"its {source} `{name}` is missing or does not match the connector's pattern"
    )


def forwarded_query(raw_query: str, dropped: frozenset[str]) -> list[str]:
    """The caller's query items as sent (order and encoding kept), less ``dropped`` names."""
    return [
        item
        for item in raw_query.split("&")
        if item and unquote_plus(item.partition("=")[0]) not in dropped
    ]


def upstream_url(base: str, path: str, raw_query: str, added: Mapping[str, str]) -> httpx.URL:
    """``base`` joined with a checked ``path``; the caller's query less the service's own
    parameters and those ``added`` sets (the credentials' own, which win)."""
    items = forwarded_query(raw_query, CALLER_QUERY | frozenset(added))
    if added:
        items.append(urlencode(added))
    url = httpx.URL(f"{base}/{path}" + (f"?{'&'.join(items)}" if items else ""))
    origin, prefix = _origin_and_path(base)
    # Built by concatenation from a checked path, so this holds; it is checked all the same.
    if (url.scheme, url.host, url.port) != origin or not url.path.startswith(prefix):
        raise UnsafePath("leaves the provider's API base URL")
    return url


@functools.lru_cache(maxsize=4096)
def _origin_and_path(base: str) -> tuple[tuple[str, str, int | None], str]:
    """``base``'s scheme, host and port, and its path less a trailing slash."""
    parsed = httpx.URL(base)
    return (parsed.scheme, parsed.host, parsed.port), parsed.path.rstrip("/")
