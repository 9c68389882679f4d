"""Where a finished flow may send the user's browser: only to an allow-listed origin.

An open redirect after an OAuth flow is a phishing aid (RFC 9700 §4.11), so both /authorize and
connect sessions check ``return_url`` here, against CONNECTORS_ALLOWED_RETURN_ORIGINS. The URL is
parsed as browsers parse it (WHATWG URL, via ada): ``https://evil.example\\@app.example/`` is a
URL of evil.example to a browser, so it is one here too. What is stored and later sent in a
``Location`` header or a link is the parsed URL's serialisation, the very URL that was judged.
"""

from __future__ import annotations

import ada_url

from personal_connectors.config import Settings
from personal_connectors.exceptions import ValidationFailed

FIELD = "return_url"


def _parsed(url: str) -> ada_url.URL | None:
    try:
        return ada_url.URL(url)
    except ValueError:
        return None


def check_return_url(url: str, settings: Settings) -> str:
    """The normalised URL, or a 400 naming ``return_url`` and what to change."""
    parsed = _parsed(url)
    if parsed is None or parsed.protocol not in {"http:", "https:"} or not parsed.hostname:
        raise ValidationFailed.for_fields(
            "return_url must be an absolute http(s) URL with a valid host and port.", FIELD
        )
    if parsed.username or parsed.password:
        raise ValidationFailed.for_fields(
            "return_url must not carry a user name or password.", FIELD
        )
    if parsed.origin not in settings.return_origins:
        raise ValidationFailed.for_fields(
            f"return_url's origin {parsed.origin[:200]} is not in "
            "CONNECTORS_ALLOWED_RETURN_ORIGINS; use one of the allowed origins or add it there.",
            FIELD,
        )
    return str(parsed.href)


def allowed_return_url(url: str | None, settings: Settings) -> str | None:
    """A stored return_url judged again (the allow-list may have changed since): the URL to
    link to, or None when it is no longer allowed."""
    if url is None:
        return None
    try:
        return check_return_url(url, settings)
    except ValidationFailed:
        return None


def with_query(url: str, extra: dict[str, str]) -> str:
    """``url`` with ``extra`` appended to its query (fragment kept), serialised by WHATWG rules."""
    parsed = ada_url.URL(url)
    params = ada_url.URLSearchParams(parsed.search.removeprefix("?"))
    for name, value in extra.items():
        params.append(name, value)
    parsed.search = str(params)
    return str(parsed.href)
