"""JSON Web Key Sets (RFC 7517) of issuers whose JWTs the service verifies, cached per process.

A set is fetched through the shared outbound client (so the outbound guard judges its address),
kept for ``ttl`` seconds, and fetched again early when a token names a key id the set lacks —
an issuer rotating its signing key publishes the new key before it signs with it — but at most
once per ``refetch_after`` seconds per set, so tokens with made-up key ids cannot make the
service hammer an issuer. Only public signing keys are kept: a symmetric (``oct``) key in a
published set would let anyone holding the set sign.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import httpx

from personal_connectors.outbound.guard import DestinationRefused

if TYPE_CHECKING:  # the JOSE library is imported on first use, not at start-up
    from joserfc.jwk import KeySet

CACHE_SECONDS = 3600.0
REFETCH_AFTER_SECONDS = 30.0
PUBLIC_KEY_TYPES = frozenset({"RSA", "EC", "OKP"})


class KeySetUnavailable(RuntimeError):
    """The key set could not be fetched or read; the message is safe to show."""


class KeySetCache:
    def __init__(
        self, ttl: float = CACHE_SECONDS, refetch_after: float = REFETCH_AFTER_SECONDS
    ) -> None:
        self._ttl = ttl
        self._refetch_after = refetch_after
        self._sets: dict[str, tuple[float, KeySet]] = {}  # by URL: (fetched at, keys)

    async def get(self, http: httpx.AsyncClient, jwks_uri: str, kid: str | None) -> KeySet:
        """The set at ``jwks_uri``; fetched again if it lacks ``kid`` and was not just fetched."""
        now = time.monotonic()
        cached = self._sets.get(jwks_uri)
        if cached is not None:
            fetched_at, keys = cached
            fresh = now - fetched_at < self._ttl
            if fresh and (kid is None or _has(keys, kid)):
                return keys
            if fresh and now - fetched_at < self._refetch_after:
                return keys  # fetched moments ago: the key id is not coming
        keys = await self._fetch(http, jwks_uri)
        self._sets[jwks_uri] = (now, keys)
        return keys

    async def _fetch(self, http: httpx.AsyncClient, jwks_uri: str) -> KeySet:
        try:
            response = await http.get(jwks_uri, headers={"Accept": "application/json"})
            response.raise_for_status()
            document = response.json()
        except DestinationRefused as exc:
            raise KeySetUnavailable(f"the JWKS address is not allowed ({exc.reason})") from None
        except (httpx.HTTPError, ValueError) as exc:
            reason = type(exc).__name__
            raise KeySetUnavailable(f"the JWKS could not be fetched ({reason})") from exc
        keys = document.get("keys") if isinstance(document, dict) else None
        if not isinstance(keys, list):
            raise KeySetUnavailable("the JWKS has no keys array")
        public = [key for key in keys if _is_public_signing_key(key)]
        from joserfc.errors import JoseError
        from joserfc.jwk import KeySet

        try:
            return KeySet.import_key_set({"keys": public})
        except (JoseError, ValueError, TypeError) as exc:
            raise KeySetUnavailable("the JWKS holds a key that cannot be read") from exc


def _is_public_signing_key(key: Any) -> bool:
    return (
        isinstance(key, dict)
        and key.get("kty") in PUBLIC_KEY_TYPES
        and key.get("use", "sig") == "sig"
        and "d" not in key  # never a private key, even if someone published one
    )


def _has(keys: KeySet, kid: str) -> bool:
    return any(key.kid == kid for key in keys.keys)
