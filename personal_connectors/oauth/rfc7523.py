"""RFC 7523 §2.1: the JWT a ``jwt_bearer`` connection signs to mint an access token.

Signed with joserfc (no hand-written crypto) by the private key the user gave; the claims are
the entry's templates filled with the connection's credentials fields (``JwtAssertion``), plus
``aud`` (the token URL unless the entry names it), ``iat``, ``exp`` and a fresh ``jti``.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from personal_connectors.providers.schema import JwtAssertion
from personal_connectors.providers.templating import fill

if TYPE_CHECKING:  # the JOSE library is imported on first use, not at start-up
    from joserfc.jwk import ECKey, RSAKey

GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"

_PEM = re.compile(r"-----BEGIN ([A-Z ]+)-----(.*?)-----END \1-----", re.DOTALL)


class InvalidPrivateKey(ValueError):
    """The private key field holds no key the entry's algorithm signs with (never says why
    in terms of the key's content)."""


def _pem_lines(pem: str) -> str:
    """``pem`` with its line breaks restored: a key pasted into a one-line input (which drops
    them) or copied from JSON (a service-account file's literal ``\\n``) is still the key."""
    found = _PEM.search(pem.replace("\\n", "\n"))
    if found is None:
        return pem
    body = re.sub(r"\s+", "", found.group(2))
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    label = found.group(1)
    return "\n".join([f"-----BEGIN {label}-----", *lines, f"-----END {label}-----", ""])


def signing_key(declared: JwtAssertion, pem: str) -> RSAKey | ECKey:
    """The private key of ``pem`` for the entry's algorithm, or ``InvalidPrivateKey``."""
    from joserfc.errors import JoseError
    from joserfc.jwk import ECKey, RSAKey

    # ES* sign with elliptic-curve keys; RS* and PS* with RSA keys.
    key_class: type[RSAKey] | type[ECKey] = ECKey if declared.algorithm[:2] == "ES" else RSAKey
    try:
        key = key_class.import_key(_pem_lines(pem).encode())
    except (JoseError, ValueError, TypeError):
        raise InvalidPrivateKey("not a PEM private key of the expected type") from None
    if not key.is_private:
        raise InvalidPrivateKey("not a private key")
    return key


def assertion(
    declared: JwtAssertion,
    values: Mapping[str, str],
    *,
    token_url: str,
    scopes: list[str],
    scope_separator: str = " ",
) -> str:
    """The signed assertion for one token request."""
    key = signing_key(declared, values[declared.private_key])
    now = int(time.time())
    claims: dict[str, Any] = {"aud": token_url}
    claims.update({name: fill(template, values) for name, template in declared.claims.items()})
    claims.update({"iat": now, "exp": now + declared.lifetime_seconds})
    claims["jti"] = secrets.token_urlsafe(16)
    if declared.scope_claim and scopes:
        claims["scope"] = scope_separator.join(scopes)
    header: dict[str, Any] = {"alg": declared.algorithm, "typ": "JWT"}
    if declared.key_id is not None:
        header["kid"] = fill(declared.key_id, values)
    from joserfc import jwt

    return jwt.encode(header, claims, key, algorithms=[declared.algorithm])
