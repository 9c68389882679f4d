"""Where a finished flow may send the user's browser: only to an allow-listed origin.

An open redirect after an OAuth flow is a phishing aid (RFC 9700 §4.11), so both /authorize and
connect sessions check ``return_url`` here, against CONNECTORS_ALLOWED_RETURN_ORIGINS.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from personal_connectors.config import Settings, origin_of
from personal_connectors.exceptions import ValidationFailed


def check_return_url(url: str, settings: Settings) -> None:
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValidationFailed.for_fields(
            "return_url must be an absolute http(s) URL.", "return_url"
        )
    if origin_of(url) not in settings.return_origins:
        raise ValidationFailed.for_fields(
            "return_url's origin is not in CONNECTORS_ALLOWED_RETURN_ORIGINS.", "return_url"
        )
