"""Rate limits on authenticated routes (SPEC §12), counted with the `limits` library
(``limiter``), which is imported only when a limit is configured: a service without limits
neither loads nor runs any of it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from personal_connectors.config import Settings

if TYPE_CHECKING:
    from personal_connectors.rate_limits.limiter import RateLimits

# The "end user" a service or exchange key's failed token exchanges count for: they name no end
# user anyone can trust, so they share one bucket per key, which no real end user id reaches
# (``!`` is not among their characters, SPEC §8).
FAILED_EXCHANGES = "!failed-exchanges"


def rate_limits_of(settings: Settings) -> RateLimits | None:
    """The process's rate limits; None when neither CONNECTORS_RATE_LIMIT nor
    CONNECTORS_RATE_LIMIT_SERVICE is set."""
    if settings.rate_limit is None and settings.rate_limit_service is None:
        return None
    from personal_connectors.rate_limits.limiter import RateLimits

    return RateLimits(settings.rate_limit, settings.rate_limit_service, settings.rate_limit_storage)
