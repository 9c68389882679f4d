"""The transactional outbox: an event recorded is a delivery owed, in the same transaction.

``ConnectionRepository.record`` stages each event it adds; just before the session flushes it,
one ``webhook_deliveries`` row is added per active endpoint of the event's organization that
wants the event's type. The rows commit (or roll back) with the event itself, so a delivery is
never lost between a commit and a send, nor sent for an event that was rolled back. The worker
(``webhooks.worker``) sends them afterwards, outside any request.

Hooking the flush rather than making ``record`` async keeps its many callers unchanged: the
listener runs inside SQLAlchemy's flush, in the same greenlet as the async session, so it may
query the endpoints with the session's own connection and transaction.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, Select, event, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, UOWTransaction

from personal_connectors.connections.events import EventType
from personal_connectors.models import (
    Connection,
    ConnectionEvent,
    WebhookDelivery,
    WebhookEndpoint,
    new_id,
    utcnow,
)

# Types delivered only to endpoints that list them explicitly: one per token handed out is
# far too chatty for an endpoint that asked for "everything".
OPT_IN_ONLY: frozenset[str] = frozenset({EventType.TOKEN_ISSUED})

_STAGED = "webhook_outbox_staged"


def wants(event_types: list[str] | None, event_type: str) -> bool:
    """Whether an endpoint subscribed to ``event_types`` (None: all but opt-in) gets a type."""
    if event_types is None:
        return event_type not in OPT_IN_ONLY
    return event_type in event_types


def stage(session: AsyncSession, row: ConnectionEvent, connection: Connection) -> None:
    """Remember an event just added to ``session``; its deliveries are added at flush time.

    The event's time is taken now (the column default would take it at the flush) so that the
    payload carries it and events recorded in one transaction keep the order they were recorded.
    """
    if row.created_at is None:
        row.created_at = utcnow()
    session.sync_session.info.setdefault(_STAGED, []).append((row, connection))


@dataclass(frozen=True)
class RecordedEvent:
    """An event row's fields, whether the ORM or a bulk writer wrote it."""

    id: str
    connection_id: str
    organization_id: str
    type: str
    detail: dict[str, Any]
    created_at: datetime

    @classmethod
    def of(cls, row: ConnectionEvent) -> RecordedEvent:
        return cls(
            row.id, row.connection_id, row.organization_id, row.type, row.detail, row.created_at
        )


def payload_of(event: RecordedEvent, connection: Connection) -> dict[str, Any]:
    """The delivered JSON: a snapshot of the connection at the event. Never a token or secret:
    only identifiers, status and the event's ``detail`` (token-free by ``record``'s contract)."""
    return {
        "type": event.type,
        "timestamp": event.created_at.isoformat(),
        "data": {
            "event_id": event.id,
            "connection_id": connection.id,
            "organization_id": connection.organization_id,
            "user_id": connection.user_id,
            "app_key": connection.app_key,
            "status": connection.status,
            "is_active": connection.is_active,
            "detail": event.detail,
        },
    }


Subscriptions = dict[str, list[tuple[str, list[str] | None]]]


def _endpoints_of(organizations: set[str]) -> Select[str, str, list[str] | None]:
    return (
        select(WebhookEndpoint.id, WebhookEndpoint.organization_id, WebhookEndpoint.event_types)
        .where(
            WebhookEndpoint.organization_id.in_(organizations),
            WebhookEndpoint.is_active.is_(True),
        )
        .execution_options(autoflush=False)
    )


def _by_organization(rows: Sequence[Row[str, str, list[str] | None]]) -> Subscriptions:
    subscriptions: Subscriptions = defaultdict(list)
    for endpoint_id, organization_id, event_types in rows:
        subscriptions[organization_id].append((endpoint_id, event_types))
    return subscriptions


def _subscribers(subscriptions: Subscriptions, event: RecordedEvent) -> list[str]:
    return [
        endpoint_id
        for endpoint_id, event_types in subscriptions.get(event.organization_id, [])
        if wants(event_types, event.type)
    ]


def _deliveries(
    event: RecordedEvent, connection: Connection, endpoint_ids: list[str]
) -> list[WebhookDelivery]:
    payload = payload_of(event, connection)
    return [
        WebhookDelivery(
            id=new_id("msg"),
            endpoint_id=endpoint_id,
            organization_id=event.organization_id,
            event_id=event.id,
            event_type=event.type,
            payload=payload,
            next_attempt_at=utcnow(),
        )
        for endpoint_id in endpoint_ids
    ]


@event.listens_for(Session, "before_flush")
def _enqueue_staged(session: Session, _context: UOWTransaction, _instances: object) -> None:
    staged: list[tuple[ConnectionEvent, Connection]] = session.info.pop(_STAGED, [])
    # Events rolled back (or expunged) before this flush are no longer pending: nothing is owed.
    staged = [(row, connection) for row, connection in staged if row in session.new]
    if not staged:
        return
    organizations = {row.organization_id for row, _ in staged}
    subscriptions = _by_organization(session.execute(_endpoints_of(organizations)).all())
    for row, connection in staged:
        recorded = RecordedEvent.of(row)
        if endpoint_ids := _subscribers(subscriptions, recorded):
            session.add_all(_deliveries(recorded, connection, endpoint_ids))


async def enqueue_recorded(
    session: AsyncSession, organizations: set[str], events: Iterable[RecordedEvent]
) -> int:
    """The outbox for writers that bulk-insert event rows instead of going through ``record``:
    call it with the inserted events (of ``organizations``) before committing them, and the
    deliveries they owe join the same transaction. Returns the deliveries added.

    One query when no endpoint of ``organizations`` is active, the common case: ``events`` is
    then never iterated, so a lazy one costs nothing (batches run to thousands of rows)."""
    if not organizations:
        return 0
    subscriptions = _by_organization((await session.execute(_endpoints_of(organizations))).all())
    if not subscriptions:
        return 0
    wanted = [(e, ids) for e in events if (ids := _subscribers(subscriptions, e))]
    if not wanted:
        return 0
    found = await session.execute(
        select(Connection).where(Connection.id.in_({e.connection_id for e, _ in wanted}))
    )
    connections = {connection.id: connection for connection in found.scalars()}
    added = [
        delivery
        for recorded, endpoint_ids in wanted
        if (connection := connections.get(recorded.connection_id)) is not None
        for delivery in _deliveries(recorded, connection, endpoint_ids)
    ]
    session.add_all(added)
    return len(added)


async def enqueue_rows(session: AsyncSession, rows: Sequence[Mapping[str, Any]]) -> int:
    """``enqueue_recorded`` for inserted rows' values (``connections.repository.event_row``'s,
    which ``tokens.refresh``'s batch writer inserts)."""
    organizations = {row["organization_id"] for row in rows}
    return await enqueue_recorded(session, organizations, (RecordedEvent(**row) for row in rows))
