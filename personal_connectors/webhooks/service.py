"""Webhook endpoint logic: which URLs an organization may register, and their signing secrets."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from personal_connectors.config import Settings
from personal_connectors.crypto.aead import Sealer, associated_data
from personal_connectors.events.types import EventType
from personal_connectors.exceptions import ValidationFailed
from personal_connectors.models import WebhookEndpoint, new_id, utcnow
from personal_connectors.outbound.urls import check_url
from personal_connectors.webhooks.exceptions import TooManyWebhooks, WebhookNotFound
from personal_connectors.webhooks.repository import WebhookRepository
from personal_connectors.webhooks.signing import generate_secret

MAX_ENDPOINTS_PER_ORGANIZATION = 20
EVENT_TYPES = frozenset(item.value for item in EventType)


def secret_aad(endpoint_id: str) -> bytes:
    return associated_data("webhook_endpoints", endpoint_id, "secret")


def open_secret(sealer: Sealer, endpoint: WebhookEndpoint) -> str:
    return sealer.open(endpoint.key_id, endpoint.secret_ct, secret_aad(endpoint.id))


@dataclass(frozen=True)
class IssuedWebhook:
    endpoint: WebhookEndpoint
    secret: str  # plaintext, for the one answer that shows it


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
        url = check_url(url, allow_internal=self.settings.webhook_loopback_allowed)
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
