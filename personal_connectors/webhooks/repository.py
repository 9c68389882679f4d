"""Database access for webhook endpoints and their outbox of deliveries."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from personal_connectors.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint


class WebhookRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, organization_id: str, endpoint_id: str) -> WebhookEndpoint | None:
        statement = select(WebhookEndpoint).where(
            WebhookEndpoint.id == endpoint_id, WebhookEndpoint.organization_id == organization_id
        )
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def list_for(self, organization_id: str) -> Sequence[WebhookEndpoint]:
        statement = (
            select(WebhookEndpoint)
            .where(WebhookEndpoint.organization_id == organization_id)
            .order_by(WebhookEndpoint.created_at, WebhookEndpoint.id)
        )
        return (await self.session.execute(statement)).scalars().all()

    async def count_for(self, organization_id: str) -> int:
        statement = select(func.count()).where(WebhookEndpoint.organization_id == organization_id)
        return int((await self.session.execute(statement)).scalar_one())

    def add(self, endpoint: WebhookEndpoint) -> None:
        self.session.add(endpoint)

    async def delete(self, endpoint: WebhookEndpoint) -> None:
        # Explicitly, not only by the foreign key's cascade: the outbox must not outlive it.
        await self.session.execute(
            delete(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint.id)
        )
        await self.session.delete(endpoint)

    async def claim_due(
        self, now: datetime, lease_until: datetime, limit: int
    ) -> list[tuple[WebhookDelivery, WebhookEndpoint | None]]:
        """Claim up to ``limit`` due deliveries for this worker, counting the attempt.

        One conditional UPDATE moves each claimed row's due time to the end of the lease, so no
        other worker takes it until then, and a worker that dies mid-send leaves it to be retried
        when the lease runs out. On PostgreSQL the candidate rows are locked with ``FOR UPDATE
        SKIP LOCKED``, so concurrent workers take different rows instead of queueing; SQLite
        serialises writers, so the same statement is atomic there without it.
        """
        due = (
            select(WebhookDelivery.id)
            .where(
                WebhookDelivery.status == DeliveryStatus.PENDING,
                WebhookDelivery.next_attempt_at <= now,
            )
            .order_by(WebhookDelivery.next_attempt_at)
            .limit(limit)
        )
        if self.session.get_bind().dialect.name == "postgresql":
            due = due.with_for_update(skip_locked=True)
        token = uuid.uuid4().hex
        await self.session.execute(
            update(WebhookDelivery)
            .where(
                WebhookDelivery.id.in_(due.scalar_subquery()),
                WebhookDelivery.status == DeliveryStatus.PENDING,
                WebhookDelivery.next_attempt_at <= now,
            )
            .values(
                claim_token=token,
                next_attempt_at=lease_until,
                attempts=WebhookDelivery.attempts + 1,
            )
            .execution_options(synchronize_session=False)
        )
        statement = (
            select(WebhookDelivery, WebhookEndpoint)
            .outerjoin(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
            .where(WebhookDelivery.claim_token == token)
            .order_by(WebhookDelivery.created_at)
        )
        rows = (await self.session.execute(statement)).tuples().all()
        await self.session.commit()
        return [(delivery, endpoint) for delivery, endpoint in rows]

    async def finish_attempt(self, delivery: WebhookDelivery, **values: Any) -> bool:
        """Write an attempt's outcome, only if this worker's claim still holds the row."""
        result = await self.session.execute(
            update(WebhookDelivery)
            .where(
                WebhookDelivery.id == delivery.id,
                WebhookDelivery.claim_token == delivery.claim_token,
            )
            .values(claim_token=None, **values)
            .execution_options(synchronize_session=False)
        )
        return cast(CursorResult[Any], result).rowcount == 1
