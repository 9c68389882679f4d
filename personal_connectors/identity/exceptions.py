"""Identity errors raised to operators (CLI) rather than API callers."""

from __future__ import annotations


class IdentityError(ValueError):
    """An operator request that cannot be carried out; the message says why."""
