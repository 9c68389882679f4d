"""When a token is refreshed, relative to its lifetime.

A fixed margin refreshes a token that lives less than the margin on every request (a provider
issuing 5-minute tokens, against a 300-second margin). Knowing when the token was issued
(``token_issued_at``, stored with each refreshed grant) gives its lifetime, and the margins are
fractions of it:

- a caller refreshes in the last quarter of the lifetime (at most the entry's
  ``refresh_margin`` before expiry), and never hands out an expired token;
- the background refresher takes a token up from its half-life (``refresh_due_at``, stored, at
  most its window before expiry), well before any caller would.

A token whose issue time is unknown (as connected or imported, until its first refresh) keeps
the fixed margins.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from personal_connectors.providers.schema import ProviderEntry
from personal_connectors.tokens.records import ConnectionLike

# The share of a token's lifetime left when a caller refreshes it.
CALLER_SHARE = 0.25
# The share left when the background refresher takes it up.
BACKGROUND_SHARE = 0.5
# A caller's margin without a catalog entry (the entry's default).
DEFAULT_MARGIN_SECONDS = ProviderEntry.model_fields["refresh_margin"].default


def caller_margin(connection: ConnectionLike, entry: ProviderEntry | None) -> timedelta:
    fixed = timedelta(seconds=entry.refresh_margin if entry is not None else DEFAULT_MARGIN_SECONDS)
    issued, expires = connection.token_issued_at, connection.expires_at
    if issued is None or expires is None or expires <= issued:
        return fixed
    return min(fixed, (expires - issued) * CALLER_SHARE)


def needs_refresh(connection: ConnectionLike, entry: ProviderEntry | None, now: datetime) -> bool:
    """Whether a caller must refresh before handing the token out."""
    if connection.expires_at is None:
        return False  # a token that does not expire (GitHub OAuth apps) is always current
    return connection.expires_at <= now + caller_margin(connection, entry)


def background_due_at(issued_at: datetime | None, expires_at: datetime | None) -> datetime | None:
    """The token's half-life; None when its lifetime is unknown."""
    if issued_at is None or expires_at is None or expires_at <= issued_at:
        return None
    return expires_at - (expires_at - issued_at) * BACKGROUND_SHARE
