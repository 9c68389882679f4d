"""The webhook outbox: each event recorded owes one delivery per active endpoint of its
organization that wants its type, added in the event's own transaction.

The rows commit (or roll back) with the event, so a delivery is never lost between a commit and
a send, nor sent for an event that was rolled back; ``webhooks.worker`` sends them later. The
queries are ``EventRepository``'s; this module decides who gets what.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from personal_connectors.events.types import EventType
from personal_connectors.models import Connection, ConnectionEvent, WebhookDelivery, new_id, utcnow

# Types delivered only to endpoints that list them explicitly: one per token handed out is
# far too chatty for an endpoint that asked for "everything".
OPT_IN_ONLY: frozenset[str] = frozenset({EventType.TOKEN_ISSUED})

# Per organization, its active endpoints: (endpoint id, the event types it wants or None).
Subscriptions = dict[str, list[tuple[str, list[str] | None]]]


def wants(event_types: list[str] | None, event_type: str) -> bool:
    """Whether an endpoint subscribed to ``event_types`` (None: all but opt-in) gets a type."""
    if event_types is None:
        return event_type not in OPT_IN_ONLY
    return event_type in event_types


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


def payload_of(
    event: RecordedEvent, connection: Connection, end_user_id: str | None
) -> dict[str, Any]:
    """The delivered JSON: a snapshot of the connection at the event. Never a token or secret:
    only identifiers (``end_user_id``: the platform's id of the end user who owns it, None for a
    member's connection), status, the platform's tags and metadata, and the event's ``detail``
    (token-free by ``record``'s contract)."""
    return {
        "type": event.type,
        "timestamp": event.created_at.isoformat(),
        "data": {
            "event_id": event.id,
            "connection_id": connection.id,
            "organization_id": connection.organization_id,
            "user_id": connection.user_id,
            "end_user_id": end_user_id,
            "app_key": connection.app_key,
            "status": connection.status,
            "is_active": connection.is_active,
            "tags": connection.tags or {},
            "metadata": connection.metadata_ or {},
            "detail": event.detail,
        },
    }


def by_organization(rows: Iterable[tuple[str, str, list[str] | None]]) -> Subscriptions:
    """``(endpoint id, organization id, event types)`` rows grouped by organization."""
    subscriptions: Subscriptions = defaultdict(list)
    for endpoint_id, organization_id, event_types in rows:
        subscriptions[organization_id].append((endpoint_id, event_types))
    return subscriptions


def subscribers(subscriptions: Subscriptions, event: RecordedEvent) -> list[str]:
    return [
        endpoint_id
        for endpoint_id, event_types in subscriptions.get(event.organization_id, [])
        if wants(event_types, event.type)
    ]


def deliveries(
    event: RecordedEvent,
    connection: Connection,
    endpoint_ids: list[str],
    end_user_id: str | None,
) -> list[WebhookDelivery]:
    payload = payload_of(event, connection, end_user_id)
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
