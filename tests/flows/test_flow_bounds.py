"""Bounds per user — pending flows and valid connect sessions — and housekeeping that finds
its rows through indexes: /authorize never scans the whole flows table."""

from __future__ import annotations

from datetime import timedelta

import httpx
from sqlalchemy import event, func, select

from personal_connectors.connect_page.repository import ConnectSessionRepository
from personal_connectors.flows.repository import FlowRepository
from personal_connectors.flows.state import state_hash
from personal_connectors.models import Flow, utcnow
from tests.conftest import Tenant, make_tenant
from tests.connect_page.conftest import envelope_error
from tests.flows.conftest import start_flow
from tests.support.db import update_row
from tests.support.service import ServiceProcess

LIMIT = 20  # the default CONNECTORS_MAX_PENDING_FLOWS and CONNECTORS_MAX_CONNECT_SESSIONS


def _flow_count(service: ServiceProcess, user_id: str) -> int:
    async def work(session, runtime):  # type: ignore[no-untyped-def]
        statement = select(func.count()).where(Flow.user_id == user_id)
        return (await session.execute(statement)).scalar_one()

    count: int = service.run_db(work)
    return count


def _flow_id(service: ServiceProcess, state: str) -> str:
    async def work(session, runtime):  # type: ignore[no-untyped-def]
        statement = select(Flow.id).where(Flow.state_hash == state_hash(state))
        return (await session.execute(statement)).scalar_one()

    found: str = service.run_db(work)
    return found


def test_pending_flows_per_user_are_bounded(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess
) -> None:
    states = [start_flow(api, tenant)["state"] for _ in range(LIMIT)]
    refused = api.post(
        "/authorize",
        params=tenant.org,
        headers=tenant.headers,
        json={"connector_type": "local-oidc"},
    )
    error = envelope_error(refused, 429, "RATE_LIMIT_EXCEEDED")
    assert "CONNECTORS_MAX_PENDING_FLOWS" in error["system_message"]
    assert 1 <= int(refused.headers["retry-after"]) <= 600
    assert _flow_count(service, tenant.user_id) == LIMIT  # nothing stored
    # Another user is not affected.
    start_flow(api, make_tenant(service))
    # A flow that ends (here: expires) frees its place.
    update_row(
        service,
        Flow,
        _flow_id(service, states[0]),
        expires_at=utcnow() - timedelta(seconds=1),
    )
    start_flow(api, tenant)


def test_valid_connect_sessions_per_user_are_bounded(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess
) -> None:
    for _ in range(LIMIT):
        created = api.post("/connect-sessions", params=tenant.org, headers=tenant.headers, json={})
        assert created.status_code == 201, created.text
    refused = api.post("/connect-sessions", params=tenant.org, headers=tenant.headers, json={})
    error = envelope_error(refused, 429, "RATE_LIMIT_EXCEEDED")
    assert "CONNECTORS_MAX_CONNECT_SESSIONS" in error["system_message"]
    assert int(refused.headers["retry-after"]) >= 1


def test_authorize_housekeeping_uses_indexes(service: ServiceProcess) -> None:
    """The statements /authorize and /connect-sessions run for their bound and their purge,
    captured as sent and explained by the database: none scans its table."""

    async def work(session, runtime):  # type: ignore[no-untyped-def]
        connection = await session.connection()
        captured: list[tuple[str, object]] = []

        def capture(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
            captured.append((statement, parameters))

        event.listen(connection.sync_connection, "before_cursor_execute", capture)
        now = utcnow()
        await FlowRepository(session).pending_of_user("user_x", now)
        await FlowRepository(session).purge_created_before(now - timedelta(hours=24))
        await ConnectSessionRepository(session).live_of_user("user_x", now)
        event.remove(connection.sync_connection, "before_cursor_execute", capture)
        plans = []
        postgres = connection.dialect.name == "postgresql"
        if postgres:
            # Small tables make a sequential scan cheapest; forbid it, so only a missing index
            # can still produce one.
            await connection.exec_driver_sql("SET LOCAL enable_seqscan = off")
        for statement, parameters in captured:
            prefix = "EXPLAIN " if postgres else "EXPLAIN QUERY PLAN "
            rows = (await connection.exec_driver_sql(prefix + statement, parameters)).all()
            plans.append((statement, "\n".join(str(row[-1]) for row in rows)))
        await session.rollback()
        return plans

    plans = service.run_db(work)
    assert len(plans) == 3, plans
    for statement, plan in plans:
        assert "Seq Scan" not in plan, (statement, plan)
        assert not any(
            line.startswith(("SCAN flows", "SCAN connect_sessions")) for line in plan.splitlines()
        ), (statement, plan)
    assert any("ix_flows_created_at" in plan for _, plan in plans), plans
    assert any("ix_flows_user_pending" in plan for _, plan in plans), plans
    assert any("ix_connect_sessions_user" in plan for _, plan in plans), plans
