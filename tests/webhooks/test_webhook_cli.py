"""The operator CLI: ``webhooks add|list|remove`` and ``events list`` (newest first, filtered,
token-issued rows included)."""

from __future__ import annotations

import json
from typing import Any

import httpx

from personal_connectors.events.repository import EventRepository
from personal_connectors.events.types import EventType
from personal_connectors.models import Connection, new_id
from tests.conftest import Tenant
from tests.support.service import ServiceProcess
from tests.webhooks.conftest import list_webhooks


def cli_json(service: ServiceProcess, *args: str) -> Any:
    result = service.cli(*args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_webhooks_add_list_remove(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess
) -> None:
    org = tenant.organization_id
    added = cli_json(service, "webhooks", "add", "https://a.example.test/h", "--org", org)
    assert added["secret"].startswith("whsec_") and added["event_types"] is None
    text = service.cli(
        "webhooks",
        "add",
        "https://b.example.test/h",
        "--org",
        org,
        "--event",
        "connection.deleted",
        "--event",
        "connection.created",
    ).stdout
    assert "whsec_" in text and "not shown again" in text
    listed = service.cli("webhooks", "list", "--org", org, "--json").stdout
    rows = json.loads(listed)
    assert [row["url"] for row in rows] == ["https://a.example.test/h", "https://b.example.test/h"]
    assert rows[1]["event_types"] == ["connection.created", "connection.deleted"]
    assert "secret" not in listed and added["secret"] not in listed
    assert [row["id"] for row in list_webhooks(api, tenant).json()["data"]] == [
        r["id"] for r in rows
    ]

    removed = cli_json(service, "webhooks", "remove", added["id"], "--org", org)
    assert removed == {"id": added["id"], "removed": True}
    assert [row["id"] for row in list_webhooks(api, tenant).json()["data"]] == [rows[1]["id"]]
    again = service.cli("webhooks", "remove", added["id"], "--org", org, check=False)
    assert again.returncode != 0 and again.stdout == ""
    refused = service.cli("webhooks", "add", "http://a.example.test/", "--org", org, check=False)
    assert refused.returncode != 0 and "https" in refused.stderr


def test_events_list_is_newest_first_and_filters(tenant: Tenant, service: ServiceProcess) -> None:
    async def work(session, runtime):  # type: ignore[no-untyped-def]
        connection = Connection(
            id=new_id("conn"),
            organization_id=tenant.organization_id,
            user_id=tenant.user_id,
            app_key="github",
            account_id=new_id("acct"),
            scopes=[],
            integration_params={},
            key_id=runtime.sealer.key_id,
        )
        session.add(connection)
        events = EventRepository(session)
        for event in (EventType.CREATED, EventType.DISABLED, EventType.TOKEN_ISSUED):
            await events.record(connection, event)
            await session.commit()
        return connection.id

    connection_id = service.run_db(work)
    org = tenant.organization_id
    listed = cli_json(service, "events", "list", "--org", org)
    assert [e["type"] for e in listed] == [
        EventType.TOKEN_ISSUED,
        EventType.DISABLED,
        EventType.CREATED,
    ]
    assert {(e["connection_id"], e["organization_id"]) for e in listed} == {(connection_id, org)}
    filtered = cli_json(
        service, "events", "list", "--connection", connection_id, "--type", EventType.DISABLED
    )
    assert [e["id"] for e in filtered] == [listed[1]["id"]]
    since = ("--since", listed[1]["created_at"])
    assert cli_json(service, "events", "list", "--org", org, *since) == listed[:2]
    assert cli_json(service, "events", "list", "--org", org, "--limit", "1") == listed[:1]
    bad = service.cli("events", "list", "--since", "yesterday", check=False)
    assert bad.returncode != 0 and "--since" in bad.stderr
