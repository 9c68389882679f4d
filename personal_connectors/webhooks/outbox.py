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
from typing import Any

from sqlalchemy import event, select
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


def payload_of(row: ConnectionEvent, connection: Connection) -> dict[str, Any]:
    """The delivered JSON: a snapshot of the connection at the event. Never a token or secret:
    only identifiers, status and the event's ``detail`` (token-free by ``record``'s contract)."""
    return {
        "type": row.type,
        "timestamp": row.created_at.isoformat(),
        "data": {
            "event_id": row.id,
            "connection_id": connection.id,
            "organization_id": connection.organization_id,
            "user_id": connection.user_id,
            "app_key": connection.app_key,
            "status": connection.status,
            "is_active": connection.is_active,
            "detail": row.detail,
        },
    }


@event.listens_for(Session, "before_flush")
def _enqueue_deliveries(session: Session, _context: UOWTransaction, _instances: object) -> None:
    staged: list[tuple[ConnectionEvent, Connection]] = session.info.pop(_STAGED, [])
    # Events rolled back (or expunged) before this flush are no longer pending: nothing is owed.
    staged = [(row, connection) for row, connection in staged if row in session.new]
    if not staged:
        return
    organizations = {row.organization_id for row, _ in staged}
    endpoints = session.execute(
        select(WebhookEndpoint.id, WebhookEndpoint.organization_id, WebhookEndpoint.event_types)
        .where(
            WebhookEndpoint.organization_id.in_(organizations),
            WebhookEndpoint.is_active.is_(True),
        )
        .execution_options(autoflush=False)
    ).all()
    by_org: dict[str, list[tuple[str, list[str] | None]]] = defaultdict(list)
    for endpoint_id, organization_id, event_types in endpoints:
        by_org[organization_id].append((endpoint_id, event_types))
    now = utcnow()
    for row, connection in staged:
        subscribed = [
            endpoint_id
            for endpoint_id, event_types in by_org.get(row.organization_id, [])
            if wants(event_types, row.type)
        ]
        if not subscribed:
            continue
        payload = payload_of(row, connection)
        for endpoint_id in subscribed:
            session.add(
                WebhookDelivery(
                    id=new_id("msg"),
                    endpoint_id=endpoint_id,
                    organization_id=row.organization_id,
                    event_id=row.id,
                    event_type=row.type,
                    payload=payload,
                    next_attempt_at=now,
                )
            )
