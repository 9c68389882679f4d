"""Webhook endpoint logic: which URLs an organization may register, and their signing secrets."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from sqlalchemy.ext.asyncio import AsyncSession

from personal_connectors.config import Settings
from personal_connectors.crypto.aead import Sealer, associated_data
from personal_connectors.events.types import EventType
from personal_connectors.exceptions import ValidationFailed
from personal_connectors.models import WebhookEndpoint, new_id, utcnow
from personal_connectors.outbound.addresses import parse_address, refusal
from personal_connectors.webhooks.exceptions import TooManyWebhooks, WebhookNotFound
from personal_connectors.webhooks.repository import WebhookRepository
from personal_connectors.webhooks.signing import generate_secret

MAX_ENDPOINTS_PER_ORGANIZATION = 20
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
WEB = frozenset({"http", "https"})
EVENT_TYPES = frozenset(item.value for item in EventType)


def secret_aad(endpoint_id: str) -> bytes:
    return associated_data("webhook_endpoints", endpoint_id, "secret")


def open_secret(sealer: Sealer, endpoint: WebhookEndpoint) -> str:
    return sealer.open(endpoint.key_id, endpoint.secret_ct, secret_aad(endpoint.id))


@dataclass(frozen=True)
class IssuedWebhook:
    endpoint: WebhookEndpoint
    secret: str  # plaintext, for the one answer that shows it


def check_url(url: str, settings: Settings) -> str:
    """https only (events describe users' accounts), to no internal address literal.

    Credentials and fragments are refused: the URL is listed back to every admin and logged
    nowhere, so it must not carry a password, and a fragment never reaches the receiver. A name
    is not resolved here (its answer can change): the outbound guard judges the address each
    delivery connects to. With ``CONNECTORS_OUTBOUND_ALLOW_INTERNAL`` (development) a receiver
    on this machine may be registered, over plain http too; nothing else changes.
    """
    try:
        parts = urlsplit(url.strip())
        host = (parts.hostname or "").lower()
        _ = parts.port  # raises on a malformed port
    except ValueError as exc:
        raise ValidationFailed.for_fields("The url is not a valid URL.", "url") from exc
    if not host or parts.username is not None or parts.password is not None or parts.fragment:
        raise ValidationFailed.for_fields(
            "The url needs a host, and neither credentials nor a fragment.", "url"
        )
    if settings.outbound_allow_internal and host in LOOPBACK_HOSTS and parts.scheme in WEB:
        return parts.geturl()
    reason = _literal_refusal(host)
    if reason is not None:
        # The worker posts from inside the deployment: an admin must not aim it at the metadata
        # service or the database host (SSRF).
        raise ValidationFailed.for_fields(
            f"The url must not point at an internal address ({reason}).", "url"
        )
    if parts.scheme != "https":
        raise ValidationFailed.for_fields("The url must be https.", "url")
    return parts.geturl()


# What inet_aton also reads as an address (``2130706433``, ``127.1``, ``0x7f.1``): not a name.
_NUMERIC_HOST = re.compile(r"^(0x[0-9a-f]+|[0-9]+)(\.(0x[0-9a-f]+|[0-9]+))*\.?$")


def _literal_refusal(host: str) -> str | None:
    if host == "localhost" or host.endswith(".localhost"):
        return "loopback"
    address = parse_address(host)
    if address is not None:
        return refusal(address)
    return "a numeric shorthand address" if _NUMERIC_HOST.match(host) else None


def check_event_types(event_types: list[str] | None) -> list[str] | None:
    if event_types is None:
        return None
    unknown = sorted(set(event_types) - EVENT_TYPES)
    if unknown:
        raise ValidationFailed.for_fields(
            f"Unknown event types: {', '.join(unknown)[:200]}.",
            "event_types",
            allowed=sorted(EVENT_TYPES),
        )
    return sorted(set(event_types))


class WebhookService:
    def __init__(self, session: AsyncSession, sealer: Sealer, settings: Settings) -> None:
        self.session = session
        self.sealer = sealer
        self.settings = settings
        self.repository = WebhookRepository(session)

    async def create(
        self,
        organization_id: str,
        url: str,
        *,
        event_types: list[str] | None = None,
        description: str | None = None,
    ) -> IssuedWebhook:
        """Validate everything before writing anything, so a refusal changes nothing."""
        url = check_url(url, self.settings)
        event_types = check_event_types(event_types)
        if await self.repository.count_for(organization_id) >= MAX_ENDPOINTS_PER_ORGANIZATION:
            raise TooManyWebhooks(
                f"An organization may have {MAX_ENDPOINTS_PER_ORGANIZATION} webhook endpoints."
            )
        endpoint = WebhookEndpoint(
            id=new_id("whe"),
            organization_id=organization_id,
            url=url,
            description=description,
            event_types=event_types,
            is_active=True,
        )
        secret = self._seal_new_secret(endpoint)
        self.repository.add(endpoint)
        await self.session.commit()
        return IssuedWebhook(endpoint, secret)

    async def list_for(self, organization_id: str) -> Sequence[WebhookEndpoint]:
        return await self.repository.list_for(organization_id)

    async def get(self, organization_id: str, endpoint_id: str) -> WebhookEndpoint:
        endpoint = await self.repository.get(organization_id, endpoint_id)
        if endpoint is None:
            raise WebhookNotFound()
        return endpoint

    async def delete(self, organization_id: str, endpoint_id: str) -> None:
        """Remove the endpoint and whatever it was still owed."""
        await self.repository.delete(await self.get(organization_id, endpoint_id))
        await self.session.commit()

    async def rotate_secret(self, organization_id: str, endpoint_id: str) -> IssuedWebhook:
        """A new secret at once: deliveries still pending are signed with it when sent."""
        endpoint = await self.get(organization_id, endpoint_id)
        secret = self._seal_new_secret(endpoint)
        endpoint.updated_at = utcnow()
        await self.session.commit()
        return IssuedWebhook(endpoint, secret)

    def _seal_new_secret(self, endpoint: WebhookEndpoint) -> str:
        secret = generate_secret()
        endpoint.secret_ct = self.sealer.seal(secret, secret_aad(endpoint.id))
        endpoint.key_id = self.sealer.key_id
        return secret
