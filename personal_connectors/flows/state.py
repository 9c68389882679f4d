"""State tokens: 256 bits from the CSPRNG, shown once, stored only as a hash (SPEC §7)."""

from __future__ import annotations

from personal_connectors.crypto import hashing

STATE_PREFIX = "state_"
MAX_STATE_LENGTH = 200


def new_state() -> str:
    return STATE_PREFIX + hashing.random_token()


def state_hash(state: str) -> str | None:
    """The lookup key of a presented state, or None for something that cannot be one."""
    if not state.startswith(STATE_PREFIX) or len(state) > MAX_STATE_LENGTH:
        return None
    return hashing.digest(state)
