"""Standard Webhooks signing (https://www.standardwebhooks.com), through its reference library.

A secret is ``whsec_`` + base64 of 32 random bytes; a signature is
``v1,<base64 HMAC-SHA256(key, "{webhook-id}.{webhook-timestamp}.{body}")>`` keyed with the
decoded bytes, so any Standard Webhooks verifier (``standardwebhooks.Webhook.verify``, Svix's
libraries) checks our deliveries without code of ours.
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass
from datetime import datetime

from standardwebhooks.webhooks import Webhook

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32


def generate_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


@dataclass(frozen=True)
class SignedHeaders:
    webhook_id: str
    timestamp: int
    signature: str

    def as_dict(self) -> dict[str, str]:
        return {
            "webhook-id": self.webhook_id,
            "webhook-timestamp": str(self.timestamp),
            "webhook-signature": self.signature,
        }


def sign(secret: str, webhook_id: str, sent_at: datetime, body: str) -> SignedHeaders:
    """The three headers of one attempt; the timestamp (and so the signature) is per attempt."""
    return SignedHeaders(
        webhook_id, int(sent_at.timestamp()), Webhook(secret).sign(webhook_id, sent_at, body)
    )
