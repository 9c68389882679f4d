"""Organization webhook endpoints and the outbox of deliveries owed to them."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from personal_connectors.models.base import Base, TimestampedMixin, id_column, utcnow


class DeliveryStatus(StrEnum):
    PENDING = "pending"  # due at ``next_attempt_at`` (or claimed by a worker until then)
    SUCCEEDED = "succeeded"  # the endpoint answered 2xx
    FAILED = "failed"  # every attempt of the retry schedule failed


class WebhookEndpoint(TimestampedMixin, Base):
    """Where an organization wants its connection events POSTed, and the key they are signed with.

    The signing secret is sealed at rest (AAD ``webhook_endpoints:<id>:secret``) and shown to the
    caller only when it is created or rotated.
    """

    __tablename__ = "webhook_endpoints"

    id: Mapped[str] = id_column()
    organization_id: Mapped[str] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    url: Mapped[str] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(String(500))
    # None: every event type except the chatty ones (see events.outbox.OPT_IN_ONLY).
    event_types: Mapped[list[str] | None]
    is_active: Mapped[bool] = mapped_column(default=True)
    key_id: Mapped[str] = mapped_column(String(32))
    secret_ct: Mapped[bytes] = mapped_column(LargeBinary)


class WebhookDelivery(Base):
    """One event owed to one endpoint: the outbox row a delivery worker claims and sends.

    Written in the transaction that records the event, so an event is never lost between the
    commit and the send. Its id is the Standard Webhooks ``webhook-id``, the same on every retry,
    so receivers can drop duplicates. ``payload`` is a snapshot taken when the event happened and
    never holds a token; only the status code and a short error class of the last attempt are
    kept, never a response body.
    """

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
        Index("ix_webhook_deliveries_endpoint", "endpoint_id", "created_at"),
        # Retention keeps an event while a delivery of it is pending (events/retention.py).
        Index("ix_webhook_deliveries_event", "event_id"),
    )

    id: Mapped[str] = id_column()
    endpoint_id: Mapped[str] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    organization_id: Mapped[str] = mapped_column(String(40))
    event_id: Mapped[str] = mapped_column(String(40))
    event_type: Mapped[str] = mapped_column(String(60))
    payload: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(20), default=DeliveryStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # Due time; a claim moves it forward by the claim lease, so a crashed worker's claim expires.
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    claim_token: Mapped[str | None] = mapped_column(String(40))
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
