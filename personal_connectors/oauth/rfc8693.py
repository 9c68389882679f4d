"""OAuth 2.0 Token Exchange (RFC 8693): its names, its errors, and the check of a subject token.

A subject token here is a JWT (RFC 7519) from an issuer an organization trusts; it stands for
one of the organization's end users. It is accepted only when signed with an asymmetric
algorithm by a key of the issuer's published set (never ``none``, never an HMAC, which a public
key could be made to "verify"), by the issuer the organization trusts, for the audience it
named, and inside its lifetime (``LEEWAY_SECONDS`` of clock skew either way).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the JOSE library is imported on first use, not at start-up
    from joserfc.jwk import KeySet


GRANT_TYPE = "urn:ietf:params:oauth:grant-type:token-exchange"
JWT_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:jwt"
ID_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:id_token"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
SUBJECT_TOKEN_TYPES = frozenset({JWT_TOKEN_TYPE, ID_TOKEN_TYPE})

ASYMMETRIC_ALGORITHMS = (
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA",
)  # fmt: skip
LEEWAY_SECONDS = 60
MAX_SUBJECT_TOKEN_BYTES = 16_384


class ExchangeError(Exception):
    """An RFC 6749 §5.2 / RFC 8693 §2.2.2 error answer; ``description`` is safe to show."""

    def __init__(
        self,
        error: str,
        description: str,
        status_code: int = 400,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.error = error
        self.description = description
        self.status_code = status_code
        self.headers = headers or {}
        super().__init__(f"{error}: {description}")

    def body(self) -> dict[str, str]:
        return {"error": self.error, "error_description": self.description}


def invalid_grant(description: str) -> ExchangeError:
    return ExchangeError("invalid_grant", description)


@dataclass(frozen=True)
class SubjectToken:
    """What a subject token says once every check passed."""

    issuer: str
    subject: str  # the value of the trusted issuer's subject claim
    claims: dict[str, Any]


def claimed_issuer(token: str) -> str:
    """The ``iss`` a JWT claims, read before anything is verified: only to choose which trusted
    issuer's keys and rules to verify it with."""
    try:
        payload = json.loads(_compact(token).payload)
    except ValueError:
        raise invalid_grant("The subject_token's claims are not JSON.") from None
    issuer = payload.get("iss") if isinstance(payload, dict) else None
    if not isinstance(issuer, str) or not issuer:
        raise invalid_grant("The subject_token names no issuer (iss).")
    return issuer


# The keys of the issuer's published set, for a key id (None: the token names none).
KeysFor = Callable[[str | None], Awaitable["KeySet"]]


async def verify_subject_token(
    token: str, *, issuer: str, audience: str, subject_claim: str, keys_for: KeysFor
) -> SubjectToken:
    """``token``'s claims once its signature, issuer, audience and lifetime are verified."""
    from joserfc import jwt
    from joserfc.errors import JoseError
    from joserfc.jwt import JWTClaimsRegistry

    header = _compact(token).headers()
    algorithm = header.get("alg")
    if algorithm not in ASYMMETRIC_ALGORITHMS:
        raise invalid_grant(
            f"The subject_token is signed with {algorithm!r}; only asymmetric algorithms "
            f"({', '.join(ASYMMETRIC_ALGORITHMS)}) are accepted."
        )
    kid = header.get("kid")
    keys = await keys_for(kid if isinstance(kid, str) else None)
    key: Any = keys
    if not isinstance(kid, str) and len(keys.keys) == 1:
        key = keys.keys[0]  # a token without a key id, from an issuer with one key
    try:
        decoded = jwt.decode(token, key, algorithms=ASYMMETRIC_ALGORITHMS)
    except JoseError:
        raise invalid_grant(
            "The subject_token's signature does not verify with the issuer's published keys."
        ) from None
    claims = decoded.claims
    registry = JWTClaimsRegistry(
        leeway=LEEWAY_SECONDS,
        iss={"essential": True, "value": issuer},
        aud={"essential": True, "value": audience},
        exp={"essential": True},
    )
    try:
        registry.validate(claims)
    except JoseError as exc:
        raise invalid_grant(f"The subject_token is not acceptable ({exc.error}).") from None
    subject = claims.get(subject_claim)
    if not isinstance(subject, str) or not subject:
        raise invalid_grant(f"The subject_token has no {subject_claim!r} claim to name the user.")
    return SubjectToken(issuer, subject, dict(claims))


def _compact(token: str) -> Any:
    if len(token) > MAX_SUBJECT_TOKEN_BYTES:
        raise invalid_grant("The subject_token is too large.")
    from joserfc import jws
    from joserfc.errors import JoseError

    try:
        return jws.extract_compact(token.encode("ascii"))
    except (JoseError, ValueError, UnicodeError):
        raise invalid_grant("The subject_token is not a signed JWT (compact form).") from None
