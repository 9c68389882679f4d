"""How a conversation with a provider can go wrong, in the classes callers act on.

- ``ProviderRejected``: the provider answered with an OAuth error (``invalid_grant``, …).
- ``ProviderUnreachable``: timeouts, connection failures and 5xx; worth retrying later.
- ``ProviderBadAnswer``: the provider answered, but not with anything usable.
- ``DestinationNotAllowed``: the outbound guard refused the provider's address; not retried.
"""

from __future__ import annotations

# Errors that mean the grant itself is gone: only a new authorization can fix them.
TERMINAL_GRANT_ERRORS = frozenset({"invalid_grant", "unauthorized_client", "invalid_client"})


class ProviderFailure(Exception):
    """Base class; messages are safe to log (never a token or a code)."""


class ProviderRejected(ProviderFailure):
    def __init__(self, error: str, description: str | None = None) -> None:
        self.error = error
        self.description = description
        super().__init__(f"provider rejected the request: {error}")

    @property
    def is_terminal(self) -> bool:
        return self.error in TERMINAL_GRANT_ERRORS


class ProviderUnreachable(ProviderFailure):
    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(f"provider unreachable: {reason}")


class ProviderBadAnswer(ProviderFailure):
    pass


class DestinationNotAllowed(ProviderFailure):
    """The outbound guard refused the provider's address (not https, or an internal one)."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"the provider's address is not an allowed destination ({reason})")
