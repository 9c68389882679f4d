"""Retention of the audit trail (SPEC §12): events older than ``CONNECTORS_EVENT_RETENTION_DAYS``
(90), and ``connection.token_issued`` events — one per token handed out, by far the most —
older than ``CONNECTORS_TOKEN_EVENT_RETENTION_DAYS`` (7), are deleted, so the table's size is
bounded by traffic times retention. Run by the background refresher once an hour and by
`connectors events prune`.

Deletes go a batch at a time, oldest first, each batch its own short transaction, so a large
backlog never holds a lock for long nor one transaction's worth of WAL. An event a webhook
delivery still pending refers to is kept until that delivery finishes; deliveries that finished
(delivered, or failed for good) are deleted after the events' retention too.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from personal_connectors.config import Settings
from personal_connectors.events.repository import EventRepository
from personal_connectors.events.types import EventType
from personal_connectors.models import utcnow

# Rows a statement deletes: small enough that a batch commits in milliseconds.
BATCH_ROWS = 5_000


@dataclass
class Pruned:
    """What one pruning deleted."""

    events: int = 0  # every type but token_issued
    token_events: int = 0
    deliveries: int = 0

    def plus(self, other: Pruned) -> Pruned:
        return Pruned(
            self.events + other.events,
            self.token_events + other.token_events,
            self.deliveries + other.deliveries,
        )

    def as_dict(self) -> dict[str, int]:
        return {
            "events": self.events,
            "token_events": self.token_events,
            "deliveries": self.deliveries,
        }


def cutoffs(settings: Settings, now: datetime) -> dict[str, datetime]:
    """Per event type, the time before which its events are deleted (a type whose retention is
    0 days, i.e. kept forever, is left out)."""
    general = settings.event_retention_days
    tokens = settings.token_event_retention_days
    result: dict[str, datetime] = {}
    for event_type in EventType:
        days = tokens if event_type == EventType.TOKEN_ISSUED else general
        if days > 0:
            result[event_type.value] = now - timedelta(days=days)
    return result


async def prune_events(
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    *,
    organization_id: str | None = None,
    stop: asyncio.Event | None = None,
    batch_rows: int = BATCH_ROWS,
) -> Pruned:
    """Delete what the retention settings say is too old (of one organization, or all), batch
    by batch until nothing is left or ``stop`` is set."""
    now = utcnow()
    pruned = Pruned()

    def stopping() -> bool:
        return stop is not None and stop.is_set()

    for event_type, before in cutoffs(settings, now).items():
        while not stopping():
            async with sessions() as session:
                deleted = await EventRepository(session).delete_oldest(
                    event_type, before, batch_rows, organization_id
                )
                await session.commit()
            if event_type == EventType.TOKEN_ISSUED:
                pruned.token_events += deleted
            else:
                pruned.events += deleted
            if deleted < batch_rows:
                break
            await asyncio.sleep(0)  # let other work of the process run between batches
    if settings.event_retention_days > 0:
        before = now - timedelta(days=settings.event_retention_days)
        while not stopping():
            async with sessions() as session:
                deleted = await EventRepository(session).delete_finished_deliveries(
                    before, batch_rows, organization_id
                )
                await session.commit()
            pruned.deliveries += deleted
            if deleted < batch_rows:
                break
            await asyncio.sleep(0)
    return pruned
