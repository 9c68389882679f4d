"""The ``connection.token_issued`` audit trail: one row per token handed out (none for a
refusal), written by a batched writer shortly after, holding no token; the rows still queued when
the service is stopped gracefully are written before it exits; a full queue drops and counts."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import time
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from personal_connectors.events.audit import TokenAudit
from personal_connectors.events.types import EventType
from personal_connectors.models import ConnectionEvent, WebhookDelivery
from personal_connectors.webhooks.service import WebhookService
from tests.conftest import Tenant
from tests.flows.conftest import connect
from tests.support import web
from tests.support.db import event_types, stored_tokens
from tests.support.oidc import free_port
from tests.support.service import ServiceProcess
from tests.tokens.conftest import token

ISSUED = EventType.TOKEN_ISSUED.value


def issued_rows(service: ServiceProcess, connection_id: str) -> list[dict[str, Any]]:
    """Every column of the connection's token-issued rows, as plain values."""

    async def work(session, runtime):  # type: ignore[no-untyped-def]
        rows = await session.execute(
            select(ConnectionEvent).where(
                ConnectionEvent.connection_id == connection_id, ConnectionEvent.type == ISSUED
            )
        )
        return [
            {
                "id": row.id,
                "connection_id": row.connection_id,
                "organization_id": row.organization_id,
                "type": row.type,
                "detail": row.detail,
                "created_at": row.created_at.isoformat(),
            }
            for row in rows.scalars()
        ]

    return service.run_db(work)


def wait_for_issued(service: ServiceProcess, connection_id: str, count: int) -> int:
    """Poll until ``count`` rows are there (or a deadline passes); how many there are."""
    deadline = time.monotonic() + 15
    while True:
        found = event_types(service, connection_id, with_token_issued=True).count(ISSUED)
        if found >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def opt_in_to_token_issued(service: ServiceProcess, tenant: Tenant) -> None:
    """A webhook endpoint of the tenant's organization that asks for token-issued events."""

    async def work(session, runtime):  # type: ignore[no-untyped-def]
        hooks = WebhookService(session, runtime.sealer, runtime.settings)
        url = f"http://127.0.0.1:{free_port()}/hooks"  # nobody listens: deliveries just wait
        await hooks.create(tenant.organization_id, url, event_types=[ISSUED])

    service.run_db(work)


def owed_deliveries(service: ServiceProcess, tenant: Tenant) -> int:
    async def work(session, runtime):  # type: ignore[no-untyped-def]
        statement = select(func.count()).where(
            WebhookDelivery.organization_id == tenant.organization_id,
            WebhookDelivery.event_type == ISSUED,
        )
        return (await session.execute(statement)).scalar_one()

    return int(service.run_db(work))


class _SeenInserts:
    """A session's connection whose statements on the driver (the audit's inserts) go past
    ``seen`` first, which may fail or stall them."""

    def __init__(self, connection: Any, seen: Any) -> None:
        self._connection = connection
        self._seen = seen

    def __getattr__(self, name: str) -> Any:
        return getattr(self._connection, name)

    async def exec_driver_sql(self, *args: Any, **kwargs: Any) -> Any:
        if asyncio.iscoroutine(seeing := self._seen(*args, **kwargs)):
            await seeing
        return await self._connection.exec_driver_sql(*args, **kwargs)


def with_inserts_seen_by(session: Any, seen: Any) -> Any:
    connection = session.connection

    async def seen_connection(*args: Any, **kwargs: Any) -> Any:
        return _SeenInserts(await connection(*args, **kwargs), seen)

    session.connection = seen_connection
    return session


def test_every_token_handed_out_is_audited_without_the_token(
    api: httpx.Client, tenant: Tenant, other_tenant: Tenant, service: ServiceProcess
) -> None:
    connection_id = connect(api, tenant)
    opt_in_to_token_issued(service, tenant)
    secrets = {tenant.api_key, *filter(None, stored_tokens(service, connection_id))}
    handed_out = 20
    for _ in range(handed_out):
        response = token(api, tenant, connection_id)
        assert response.status_code == 200, response.text
        secrets.add(response.json()["access_token"])
    # Refusals hand nothing out and record nothing.
    assert token(api, other_tenant, connection_id).status_code == 404
    assert token(api, tenant, "conn_" + "0" * 32).status_code == 404
    forced = token(api, tenant, connection_id, force_refresh="true")
    assert forced.status_code == 200, forced.text
    secrets |= {forced.json()["access_token"], *filter(None, stored_tokens(service, connection_id))}

    assert wait_for_issued(service, connection_id, handed_out + 1) == handed_out + 1
    # A last hand-out, queued after all of these: the writer keeps its queue's order, so once
    # that one is written, anything these requests had queued beyond their rows would be too.
    sentinel = connect(api, other_tenant)
    assert token(api, other_tenant, sentinel).status_code == 200
    assert wait_for_issued(service, sentinel, 1) == 1
    rows = issued_rows(service, connection_id)
    assert len(rows) == handed_out + 1
    assert {row["organization_id"] for row in rows} == {tenant.organization_id}
    assert all(row["detail"]["api_key_id"] == tenant.api_key_id for row in rows)
    assert sorted(row["detail"]["refreshed"] for row in rows) == [False] * handed_out + [True]
    assert len({row["id"] for row in rows}) == len(rows)
    dumped = json.dumps(rows)
    for secret in secrets:
        assert secret not in dumped
    # The endpoint that opted in is owed one delivery per row, written with the rows.
    assert owed_deliveries(service, tenant) == handed_out + 1
    # The refresh itself is still recorded as a lifecycle event, and listed in time order.
    assert event_types(service, connection_id) == ["connection.created", "connection.refreshed"]


def test_queued_rows_are_written_on_graceful_shutdown(
    api: httpx.Client,
    tenant: Tenant,
    service: ServiceProcess,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    connection_id = connect(api, tenant)
    # A second server on the same database whose writer would wait an hour: only the flush at
    # shutdown can write what it queued.
    env = {**service.env, "CONNECTORS_TOKEN_AUDIT_FLUSH_SECONDS": "3600"}
    second = ServiceProcess(free_port(), env, tmp_path_factory.mktemp("audit") / "service.log")
    second.start()
    try:
        with web.client(base_url=second.api, timeout=30) as client:
            for _ in range(7):
                assert token(client, tenant, connection_id).status_code == 200
        # Still queued: the hour has not passed and the queue is far from a batch. A hand-out
        # through the first server, written by its writer a period later, shows that a writer
        # period has passed since.
        assert token(api, tenant, connection_id).status_code == 200
        assert wait_for_issued(service, connection_id, 1) == 1
        assert event_types(service, connection_id, with_token_issued=True).count(ISSUED) == 1
    finally:
        second.stop()  # SIGTERM, as an orchestrator stops it
    # Uvicorn re-raises the SIGTERM once its shutdown is complete: -15 is a graceful exit here.
    assert second.process is not None and second.process.returncode in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in second.logs()
    assert event_types(service, connection_id, with_token_issued=True).count(ISSUED) == 1 + 7


def test_a_full_queue_drops_and_counts_instead_of_waiting(
    service: ServiceProcess, tenant: Tenant, caplog: pytest.LogCaptureFixture
) -> None:
    connection_id = f"conn_{os.urandom(16).hex()}"

    async def work(session, runtime):  # type: ignore[no-untyped-def]
        audit = TokenAudit(capacity=5, batch_size=2, flush_seconds=3600)
        for _ in range(8):
            audit.record(connection_id, tenant.organization_id, tenant.api_key_id, refreshed=False)
        queued, dropped = audit.pending, audit.dropped
        written = await audit.flush(runtime.sessions)
        return queued, dropped, written, audit.pending

    with caplog.at_level(logging.WARNING, logger="personal_connectors.events.audit"):
        queued, dropped, written, left = service.run_db(work)
    assert (queued, dropped, written, left) == (5, 3, 5, 0)
    assert event_types(service, connection_id, with_token_issued=True) == [ISSUED] * 5
    assert any("dropped 3 events" in record.getMessage() for record in caplog.records)


def test_a_flush_is_one_transaction_kept_whole_for_the_next_attempt_when_it_fails(
    service: ServiceProcess, tenant: Tenant
) -> None:
    """Five statements of two rows each: the fourth fails, so none of the ten is stored (not
    even the three statements before it), all ten wait for the next flush, and that one stores
    each exactly once."""
    connection_id = f"conn_{os.urandom(16).hex()}"

    async def work(session, runtime):  # type: ignore[no-untyped-def]
        audit = TokenAudit(batch_size=2, flush_seconds=3600)
        for _ in range(10):
            audit.record(connection_id, tenant.organization_id, tenant.api_key_id, refreshed=False)
        calls = 0

        def counted(*args, **kwargs):  # type: ignore[no-untyped-def]
            nonlocal calls
            calls += 1
            if calls == 4:
                raise ConnectionResetError("the database went away")

        def failing_on_the_fourth_statement():  # type: ignore[no-untyped-def]
            return with_inserts_seen_by(runtime.sessions(), counted)

        failed = await audit.flush(failing_on_the_fourth_statement)
        async with runtime.sessions() as reading:
            stored = await reading.scalar(
                select(func.count())
                .select_from(ConnectionEvent)
                .where(ConnectionEvent.connection_id == connection_id)
            )
        waiting = audit.pending
        written = await audit.flush(runtime.sessions)
        return failed, stored, waiting, written, audit.pending, audit.dropped

    failed, stored, waiting, written, left, dropped = service.run_db(work)
    assert (failed, stored, waiting, written, left, dropped) == (0, 0, 10, 10, 0, 0)
    assert event_types(service, connection_id, with_token_issued=True) == [ISSUED] * 10


def test_a_flush_cancelled_midway_puts_its_batch_back(
    service: ServiceProcess, tenant: Tenant
) -> None:
    """A shutdown that runs out of time cancels the flush: its rows go back to the queue (for
    the last flush, or to be counted as lost), never silently away."""
    connection_id = f"conn_{os.urandom(16).hex()}"

    async def work(session, runtime):  # type: ignore[no-untyped-def]
        audit = TokenAudit(flush_seconds=3600)
        for _ in range(3):
            audit.record(connection_id, tenant.organization_id, tenant.api_key_id, refreshed=False)
        entered = asyncio.Event()

        async def never_answering(*args, **kwargs):  # type: ignore[no-untyped-def]
            entered.set()
            await asyncio.Event().wait()  # a database that never answers

        def stalling():  # type: ignore[no-untyped-def]
            return with_inserts_seen_by(runtime.sessions(), never_answering)

        flushing = asyncio.ensure_future(audit.flush(stalling))
        await entered.wait()
        flushing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await flushing
        return audit.pending, audit.dropped

    assert service.run_db(work) == (3, 0)


def test_a_flush_cancelled_after_its_commit_is_not_written_twice(
    service: ServiceProcess, tenant: Tenant
) -> None:
    """Cancelled while its session closes, after the commit: the rows are stored, so they are
    not put back (the last flush would store them again under new ids)."""
    connection_id = f"conn_{os.urandom(16).hex()}"

    async def work(session, runtime):  # type: ignore[no-untyped-def]
        audit = TokenAudit(flush_seconds=3600)
        for _ in range(3):
            audit.record(connection_id, tenant.organization_id, tenant.api_key_id, refreshed=False)
        closing, closed = asyncio.Event(), asyncio.Event()

        def slow_to_close():  # type: ignore[no-untyped-def]
            slow = runtime.sessions()
            close = slow.close

            async def close_after_a_while():  # type: ignore[no-untyped-def]
                closing.set()
                await closed.wait()
                await close()

            slow.close = close_after_a_while
            return slow

        flushing = asyncio.ensure_future(audit.flush(slow_to_close))
        await closing.wait()
        flushing.cancel()
        await asyncio.sleep(0)
        closed.set()
        with contextlib.suppress(asyncio.CancelledError):
            await flushing
        return audit.pending, audit.dropped

    assert service.run_db(work) == (0, 0)
    assert event_types(service, connection_id, with_token_issued=True) == [ISSUED] * 3
