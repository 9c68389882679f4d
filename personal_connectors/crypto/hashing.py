"""One-way hashes for bearer secrets we only ever need to recognise (API keys, state tokens).

Both are ≥ 238 bits of CSPRNG output, so a plain SHA-256 is enough: there is nothing to brute-force,
and an indexed lookup by hash keeps authentication O(1).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string

_ALPHANUMERIC = string.ascii_letters + string.digits


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def matches(secret: str, expected_digest: str) -> bool:
    """Constant-time comparison of a presented secret against a stored digest."""
    return same_digest(digest(secret), expected_digest)


def same_digest(presented_digest: str, expected_digest: str) -> bool:
    """``matches`` for a caller that has the presented secret's digest already."""
    return hmac.compare_digest(presented_digest, expected_digest)


def random_alphanumeric(length: int) -> str:
    return "".join(secrets.choice(_ALPHANUMERIC) for _ in range(length))


def random_token() -> str:
    """256 bits from the CSPRNG, base64url without padding (43 characters)."""
    return secrets.token_urlsafe(32)
