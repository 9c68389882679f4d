"""The outbox and the stand-alone worker, with no ``serve`` running: deliveries are written in
the event's own transaction (and not for a rolled-back one), ``token_issued`` goes only to
endpoints that ask for it, and concurrent ``webhooks deliver --once`` workers send each
delivery exactly once (PostgreSQL: ``SKIP LOCKED``; SQLite: the conditional claim)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import insert
from standardwebhooks.webhooks import Webhook

from personal_connectors.events.repository import EventRepository
from personal_connectors.events.types import EventType
from personal_connectors.identity.service import IdentityService
from personal_connectors.models import Connection, ConnectionEvent, DeliveryStatus, new_id, utcnow
from personal_connectors.oauth.client import TokenGrant
from personal_connectors.tokens.vault import TokenVault
from personal_connectors.webhooks.service import WebhookService
from tests.support.oidc import free_port
from tests.support.outputs import RECORD
from tests.support.service import (
    TEST_ENCRYPTION_KEY,
    ServiceProcess,
    create_postgres_database,
    drop_postgres_database,
)
from tests.support.webhook_receiver import WebhookReceiver
from tests.webhooks.conftest import deliveries

ACCESS_TOKEN = "outbox-test-access-token-0123456789"
REFRESH_TOKEN = "outbox-test-refresh-token-0123456789"
TOGGLES = 15
DELIVER_ONCE = ("webhooks", "deliver", "--once", "--json")


@pytest.fixture(params=("sqlite", "postgres"))
def offline(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServiceProcess]:
    """The service's configuration and database, but no ``serve`` process (so no worker)."""
    env = {
        "CONNECTORS_DATA_DIR": str(tmp_path / "data"),
        "CONNECTORS_ENCRYPTION_KEYS": TEST_ENCRYPTION_KEY,
        "CONNECTORS_OUTBOUND_ALLOW_INTERNAL": "true",
        "CONNECTORS_WEBHOOK_RETRY_SCHEDULE": "0.5",
    }
    database_url = None
    if request.param == "postgres":
        database_url = create_postgres_database()
        env["CONNECTORS_DATABASE_URL"] = database_url
    proc = ServiceProcess(free_port(), env, tmp_path / "unused.log")
    proc.cli("migrate")
    yield proc
    if database_url:
        drop_postgres_database(database_url)


def seed(proc: ServiceProcess, receiver: WebhookReceiver) -> tuple[str, dict[str, str], str]:
    """An organization with two endpoints, and a connection's events recorded the way the
    service records them. Returns the organization, the endpoints' secrets, the connection."""

    async def work(session, runtime):  # type: ignore[no-untyped-def]
        identities = IdentityService(session)
        org = await identities.create_organization("Hooks Inc")
        user = await identities.create_user("o@example.test", org.id)
        hooks = WebhookService(session, runtime.sealer, runtime.settings)
        everything = await hooks.create(org.id, receiver.url("/all"))
        tokens_only = await hooks.create(
            org.id, receiver.url("/tokens"), event_types=[EventType.TOKEN_ISSUED]
        )
        secrets = {
            everything.endpoint.id: everything.secret,
            tokens_only.endpoint.id: tokens_only.secret,
        }
        org_id = org.id
        connection = Connection(
            id=new_id("conn"),
            organization_id=org.id,
            user_id=user.id,
            app_key="github",
            account_id="42",
            scopes=["repo"],
            integration_params={},
        )
        grant = TokenGrant(ACCESS_TOKEN, REFRESH_TOKEN, "Bearer", None, ["repo"])
        TokenVault(runtime.sealer).store(connection, grant)
        events = EventRepository(session)
        session.add(connection)
        await events.record(connection, EventType.CREATED, scopes=["repo"])
        await session.commit()
        # Rolled back: neither the event nor a delivery for it may remain.
        await events.record(connection, EventType.REVOKED)
        await session.rollback()
        await session.refresh(connection)  # the rollback expired it
        for index in range(TOGGLES):
            connection.is_active = index % 2 == 1
            await events.record(
                connection, EventType.ENABLED if connection.is_active else EventType.DISABLED
            )
            await session.commit()
        await events.record(connection, EventType.TOKEN_ISSUED, count=1)
        await session.commit()
        # A bulk writer (events.audit) inserts rows itself and hands them to the outbox.
        bulk = {
            "id": new_id("evt"),
            "connection_id": connection.id,
            "organization_id": org_id,
            "type": EventType.TOKEN_ISSUED.value,
            "detail": {"refreshed": False},
            "created_at": utcnow(),
        }
        await session.execute(insert(ConnectionEvent), [bulk])
        assert await events.enqueue_rows([bulk]) == 1
        await session.commit()
        return org_id, secrets, connection.id

    return proc.run_db(work)


def test_outbox_filters_and_concurrent_workers_deliver_each_once(
    offline: ServiceProcess,
) -> None:
    receiver = WebhookReceiver()
    try:
        org, secrets, connection_id = seed(offline, receiver)
        everything, tokens_only = secrets
        rows = deliveries(offline, org)
        assert Counter((row.endpoint_id, row.event_type) for row in rows) == {
            (everything, EventType.CREATED): 1,
            (everything, EventType.DISABLED): (TOGGLES + 1) // 2,
            (everything, EventType.ENABLED): TOGGLES // 2,
            (tokens_only, EventType.TOKEN_ISSUED): 2,
        }
        assert all(row.status == DeliveryStatus.PENDING and row.attempts == 0 for row in rows)

        # Two stand-alone workers at once: every delivery goes out exactly once.
        workers = [
            subprocess.Popen(
                [sys.executable, "-m", "personal_connectors", *DELIVER_ONCE],
                env={**os.environ, **offline.env},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        outputs = [worker.communicate(timeout=120) for worker in workers]
        for output in outputs:
            RECORD.record("connectors webhooks deliver", *output)
        assert all(worker.returncode == 0 for worker in workers), outputs
        for key in ("attempted", "delivered"):
            assert sum(json.loads(out)[key] for out, _ in outputs) == len(rows), outputs
        seen = receiver.requests()
        assert sorted(r.webhook_id for r in seen) == sorted(row.id for row in rows)
        endpoint_of = {row.id: row.endpoint_id for row in rows}
        for r in seen:
            payload = Webhook(secrets[endpoint_of[r.webhook_id]]).verify(r.body, r.headers)
            assert payload["data"]["connection_id"] == connection_id
            assert ACCESS_TOKEN not in r.body.decode() and REFRESH_TOKEN not in r.body.decode()
        issued = receiver.requests("/tokens")
        assert [r.json["type"] for r in issued] == [EventType.TOKEN_ISSUED] * 2
        done = deliveries(offline, org)
        assert all(row.status == DeliveryStatus.SUCCEEDED and row.attempts == 1 for row in done)
    finally:
        receiver.close()
