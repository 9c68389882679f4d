"""Retention of the audit trail (SPEC §12): events older than `CONNECTORS_EVENT_RETENTION_DAYS`
(90) and `connection.token_issued` events older than `CONNECTORS_TOKEN_EVENT_RETENTION_DAYS` (7)
are deleted in batches by `connectors events prune` and by the refresher's pass; recent events
stay, and so does an old event whose webhook delivery is still pending (with that delivery),
while deliveries finished that long ago go."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import event, func, select

from personal_connectors.events.retention import prune_events
from personal_connectors.events.types import EventType
from personal_connectors.models import (
    ConnectionEvent,
    DeliveryStatus,
    WebhookDelivery,
    WebhookEndpoint,
    new_id,
    new_time_ordered_ids,
    utcnow,
)
from tests.conftest import Tenant, make_tenant
from tests.support.service import ServiceProcess
from tests.tokens.conftest import run_refresher_once


@dataclass(frozen=True)
class Trail:
    """The seeded rows' ids, by what retention must do with them."""

    pruned: frozenset[str]
    kept: frozenset[str]
    awaited: str  # old, but its delivery is pending
    pending_delivery: str
    finished_delivery: str


def seed_trail(service: ServiceProcess, tenant: Tenant) -> Trail:
    now = utcnow()
    old, recent = now - timedelta(days=100), now - timedelta(days=10)

    def row(event_type: EventType, at: datetime) -> ConnectionEvent:
        (event_id,) = new_time_ordered_ids("evt")
        return ConnectionEvent(
            id=event_id,
            connection_id="conn_" + "1" * 32,
            organization_id=tenant.organization_id,
            type=event_type,
            detail={},
            created_at=at,
        )

    old_refresh = row(EventType.REFRESHED, old)
    old_token = row(EventType.TOKEN_ISSUED, now - timedelta(days=8))
    recent_refresh = row(EventType.REFRESHED, recent)
    recent_token = row(EventType.TOKEN_ISSUED, now - timedelta(days=6))
    awaited = row(EventType.DISABLED, old)  # its delivery is still pending
    delivered = row(EventType.ENABLED, old)  # delivered long ago: event and delivery go

    async def work(session, runtime):  # type: ignore[no-untyped-def]
        endpoint = WebhookEndpoint(
            id=new_id("wh"),
            organization_id=tenant.organization_id,
            url="https://receiver.example.test/hook",
            event_types=None,
            is_active=False,
            key_id="k",
            secret_ct=b"x",
        )
        session.add(endpoint)
        rows = [old_refresh, old_token, recent_refresh, recent_token, awaited, delivered]
        session.add_all(rows)
        await session.flush()

        def delivery(of: ConnectionEvent, status: DeliveryStatus, due: datetime) -> str:
            item = WebhookDelivery(
                id=new_id("msg"),
                endpoint_id=endpoint.id,
                organization_id=tenant.organization_id,
                event_id=of.id,
                event_type=of.type,
                payload={},
                status=status,
                next_attempt_at=due,  # pending: not due before the test ends
                created_at=of.created_at,
            )
            session.add(item)
            return item.id

        pending = delivery(awaited, DeliveryStatus.PENDING, now + timedelta(days=1))
        finished = delivery(delivered, DeliveryStatus.SUCCEEDED, old)
        await session.commit()
        return pending, finished

    pending, finished = service.run_db(work)
    return Trail(
        pruned=frozenset({old_refresh.id, old_token.id, delivered.id}),
        kept=frozenset({recent_refresh.id, recent_token.id, awaited.id}),
        awaited=awaited.id,
        pending_delivery=pending,
        finished_delivery=finished,
    )


def remaining(service: ServiceProcess, tenant: Tenant) -> tuple[set[str], set[str]]:
    """The tenant's event ids and webhook delivery ids."""

    async def work(session, runtime):  # type: ignore[no-untyped-def]
        events = await session.execute(
            select(ConnectionEvent.id).where(
                ConnectionEvent.organization_id == tenant.organization_id
            )
        )
        deliveries = await session.execute(
            select(WebhookDelivery.id).where(
                WebhookDelivery.organization_id == tenant.organization_id
            )
        )
        return set(events.scalars()), set(deliveries.scalars())

    return service.run_db(work)


def test_events_prune_deletes_what_is_past_retention_and_reports_counts(
    service: ServiceProcess,
) -> None:
    tenant = make_tenant(service)
    trail = seed_trail(service, tenant)
    result = service.cli("events", "prune", "--org", tenant.organization_id, "--json")
    assert json.loads(result.stdout) == {"events": 2, "token_events": 1, "deliveries": 1}
    events, deliveries = remaining(service, tenant)
    assert events == trail.kept
    assert deliveries == {trail.pending_delivery}
    # Nothing left to do: a second run deletes nothing.
    again = service.cli("events", "prune", "--org", tenant.organization_id, "--json")
    assert json.loads(again.stdout) == {"events": 0, "token_events": 0, "deliveries": 0}


def test_retention_days_come_from_the_settings_and_zero_keeps_everything(
    service: ServiceProcess,
) -> None:
    tenant = make_tenant(service)
    trail = seed_trail(service, tenant)
    kept_all = service.cli(
        "events",
        "prune",
        "--org",
        tenant.organization_id,
        "--json",
        env={
            "CONNECTORS_EVENT_RETENTION_DAYS": "0",
            "CONNECTORS_TOKEN_EVENT_RETENTION_DAYS": "0",
        },
    )
    assert json.loads(kept_all.stdout) == {"events": 0, "token_events": 0, "deliveries": 0}
    # Token events after 5 days: the one 6 days old goes too; other events after 9 days.
    shorter = service.cli(
        "events",
        "prune",
        "--org",
        tenant.organization_id,
        "--json",
        env={
            "CONNECTORS_EVENT_RETENTION_DAYS": "9",
            "CONNECTORS_TOKEN_EVENT_RETENTION_DAYS": "5",
        },
    )
    assert json.loads(shorter.stdout) == {"events": 3, "token_events": 2, "deliveries": 1}
    events, _ = remaining(service, tenant)
    assert events == {trail.awaited}


def test_a_backlog_is_deleted_a_batch_a_statement(service: ServiceProcess) -> None:
    tenant = make_tenant(service)
    backlog = 23
    long_ago = utcnow() - timedelta(days=30)

    async def work(session, runtime):  # type: ignore[no-untyped-def]
        session.add_all(
            ConnectionEvent(
                id=event_id,
                connection_id="conn_" + "2" * 32,
                organization_id=tenant.organization_id,
                type=EventType.TOKEN_ISSUED,
                detail={},
                created_at=long_ago + timedelta(seconds=n),
            )
            for n, event_id in enumerate(new_time_ordered_ids("evt", backlog))
        )
        await session.commit()
        deletes: list[str] = []

        def count(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
            if statement.lstrip().upper().startswith("DELETE FROM CONNECTION_EVENTS"):
                deletes.append(statement)

        engine = runtime.engine.sync_engine
        event.listen(engine, "before_cursor_execute", count)
        try:
            pruned = await prune_events(
                runtime.sessions,
                runtime.settings,
                organization_id=tenant.organization_id,
                batch_rows=10,
            )
        finally:
            event.remove(engine, "before_cursor_execute", count)
        left = await session.execute(
            select(func.count()).where(ConnectionEvent.organization_id == tenant.organization_id)
        )
        return pruned.token_events, len(deletes), left.scalar_one()

    deleted, token_statements_and_others, left = service.run_db(work)
    assert deleted == backlog
    assert left == 0
    # 10 + 10 + 3 for token_issued, then one (empty) statement per other event type.
    assert token_statements_and_others == 3 + len(EventType) - 1


def test_the_refresher_prunes_in_its_pass(service: ServiceProcess) -> None:
    tenant = make_tenant(service)
    trail = seed_trail(service, tenant)
    counts = run_refresher_once(service, tenant.organization_id)
    assert counts["pruned_events"] == 2
    assert counts["pruned_token_events"] == 1
    assert counts["pruned_deliveries"] == 1
    events, deliveries = remaining(service, tenant)
    assert events == trail.kept
    assert deliveries == {trail.pending_delivery}
