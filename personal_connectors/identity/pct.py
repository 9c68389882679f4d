"""``pct_…`` tokens: what a token exchange hands out for this service itself (SPEC §8).

A ``pct_`` token stands for one end user of one organization, obtained by one exchange or
service key, for ``PCT_SECONDS``. It is sealed with the service's encryption key (AES-GCM,
its own associated data), so it names its end user to nobody, cannot be forged or altered,
needs no row, and any instance sharing the keyring accepts it; the key that obtained it is
checked again on every use, so deleting or pausing that key ends its tokens at once.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from dataclasses import dataclass

from personal_connectors.crypto.aead import DecryptionError, Sealer, associated_data
from personal_connectors.crypto.keyring import KeyConfigurationError

PCT_PREFIX = "pct_"
PCT_SECONDS = 300
_AAD = associated_data("exchanged_tokens", "pct", "claims")


class InvalidExchangedToken(ValueError):
    """Forged, altered, sealed with a key this service no longer has, or expired."""


@dataclass(frozen=True)
class ExchangedToken:
    organization_id: str
    end_user_id: str
    api_key_id: str  # the exchange or service key that obtained it
    expires_at: int  # seconds since the epoch


def is_exchanged_token(presented: str | None) -> bool:
    return presented is not None and presented.startswith(PCT_PREFIX)


def mint(
    sealer: Sealer, organization_id: str, end_user_id: str, api_key_id: str
) -> tuple[str, int]:
    """A new token and its lifetime in seconds."""
    claims = {
        "org": organization_id,
        "eu": end_user_id,
        "key": api_key_id,
        "exp": int(time.time()) + PCT_SECONDS,
    }
    blob = sealer.seal(json.dumps(claims, separators=(",", ":")), _AAD)
    encoded = base64.urlsafe_b64encode(blob).rstrip(b"=").decode()
    return f"{PCT_PREFIX}{sealer.key_id}.{encoded}", PCT_SECONDS


def read(sealer: Sealer, token: str) -> ExchangedToken:
    """What ``token`` stands for; ``InvalidExchangedToken`` unless it is genuine and current."""
    key_id, _, encoded = token.removeprefix(PCT_PREFIX).partition(".")
    try:
        blob = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        claims = json.loads(sealer.open(key_id, blob, _AAD))
        found = ExchangedToken(
            str(claims["org"]), str(claims["eu"]), str(claims["key"]), int(claims["exp"])
        )
    except (
        binascii.Error,
        ValueError,
        KeyError,
        TypeError,
        DecryptionError,
        KeyConfigurationError,
    ) as exc:
        raise InvalidExchangedToken("The token is not one this service issued.") from exc
    if found.expires_at <= time.time():
        raise InvalidExchangedToken("The token has expired; exchange a new one.")
    return found
