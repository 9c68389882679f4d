"""``connectors webhooks`` (organization endpoints, the delivery worker) and ``connectors
events`` (the audit trail of connections: listing it, pruning it by the retention settings)."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from sqlalchemy.ext.asyncio import AsyncSession

from personal_connectors.cli.context import run_with_session
from personal_connectors.cli.output import JsonOption, emit, emit_table, fail
from personal_connectors.events.repository import EventRepository
from personal_connectors.events.retention import Pruned, prune_events
from personal_connectors.identity.repository import IdentityRepository
from personal_connectors.models import ConnectionEvent, WebhookEndpoint
from personal_connectors.runtime import Runtime
from personal_connectors.webhooks.schemas import WebhookOut
from personal_connectors.webhooks.service import IssuedWebhook, WebhookService
from personal_connectors.webhooks.worker import DeliveryWorker, Round

webhooks = typer.Typer(no_args_is_help=True)
events = typer.Typer(no_args_is_help=True)

OrgOption = Annotated[str, typer.Option("--org", help="The organization (org_…).")]


def _service(session: AsyncSession, runtime: Runtime) -> WebhookService:
    return WebhookService(session, runtime.sealer, runtime.settings)


def _row(endpoint: WebhookEndpoint) -> dict[str, Any]:
    return WebhookOut.of(endpoint).model_dump(mode="json")


@webhooks.command("add")
def add_webhook(
    url: str,
    org: OrgOption,
    event: Annotated[
        list[str] | None,
        typer.Option(
            "--event", help="An event type to receive (repeatable); default: all but token ones."
        ),
    ] = None,
    description: Annotated[str | None, typer.Option("--description")] = None,
    as_json: bool = JsonOption,
) -> None:
    """Add a webhook endpoint. Its signing secret is printed once and cannot be shown again."""

    async def work(session: AsyncSession, runtime: Runtime) -> IssuedWebhook:
        if await IdentityRepository(session).get_organization(org) is None:
            fail(f"no organization {org}")
        return await _service(session, runtime).create(
            org, url, event_types=event or None, description=description
        )

    issued = run_with_session(work)
    emit(
        {**_row(issued.endpoint), "secret": issued.secret},
        as_json,
        f"Added webhook endpoint {issued.endpoint.id}. Copy its signing secret now, it is not "
        f"shown again:\n{issued.secret}",
    )


@webhooks.command("list")
def list_webhooks(org: OrgOption, as_json: bool = JsonOption) -> None:
    """List an organization's webhook endpoints (never their secrets)."""

    async def work(session: AsyncSession, runtime: Runtime) -> Sequence[WebhookEndpoint]:
        return await _service(session, runtime).list_for(org)

    rows = [_row(endpoint) for endpoint in run_with_session(work)]
    for row in rows:
        if not as_json:
            row["event_types"] = ", ".join(row["event_types"] or ["(all but token ones)"])
    emit_table(rows, ["id", "url", "event_types", "description", "created_at"], as_json, "Webhooks")


@webhooks.command("remove")
def remove_webhook(endpoint_id: str, org: OrgOption, as_json: bool = JsonOption) -> None:
    """Remove a webhook endpoint and the deliveries it is still owed."""

    async def work(session: AsyncSession, runtime: Runtime) -> None:
        await _service(session, runtime).delete(org, endpoint_id)

    run_with_session(work)
    emit({"id": endpoint_id, "removed": True}, as_json, f"Removed webhook endpoint {endpoint_id}")


@webhooks.command("deliver")
def deliver(
    once: Annotated[bool, typer.Option("--once", help="Send what is due now, then exit.")] = False,
    as_json: bool = JsonOption,
) -> None:
    """Run the delivery worker (``serve`` runs one too unless CONNECTORS_WEBHOOK_WORKER=false)."""

    async def work(_: AsyncSession, runtime: Runtime) -> Round:
        worker = DeliveryWorker(runtime)
        if once:
            return await worker.drain()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await worker.run(stop)
        return Round()

    done = run_with_session(work)
    if once:
        emit(
            {"attempted": done.attempted, "delivered": done.delivered},
            as_json,
            f"Attempted {done.attempted} deliveries, {done.delivered} delivered.",
        )


def _parse_since(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        fail(f"--since: not an ISO 8601 date or time: {value}")
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed


@events.command("list")
def list_events(
    org: Annotated[str | None, typer.Option("--org")] = None,
    connection: Annotated[str | None, typer.Option("--connection")] = None,
    event_type: Annotated[
        str | None, typer.Option("--type", help="e.g. connection.refreshed")
    ] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="ISO 8601; naive times are UTC.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=10000)] = 50,
    as_json: bool = JsonOption,
) -> None:
    """List connection events, newest first (token-issued rows included)."""
    after = _parse_since(since)

    async def work(session: AsyncSession, _: Runtime) -> Sequence[ConnectionEvent]:
        return await EventRepository(session).newest(
            organization_id=org,
            connection_id=connection,
            event_type=event_type,
            since=after,
            limit=limit,
        )

    rows = [
        {
            "id": row.id,
            "created_at": row.created_at.isoformat(),
            "type": row.type,
            "connection_id": row.connection_id,
            "organization_id": row.organization_id,
            "detail": row.detail if as_json else json.dumps(row.detail, default=str),
        }
        for row in run_with_session(work)
    ]
    emit_table(
        rows,
        ["created_at", "type", "connection_id", "detail"],  # the organization: in --json
        as_json,
        "Events",
    )


@events.command("prune")
def prune_events_command(
    org: Annotated[
        str | None, typer.Option("--org", help="Only this organization's events.")
    ] = None,
    days: Annotated[
        int | None,
        typer.Option(
            "--days", min=0, help="Keep this many days; default CONNECTORS_EVENT_RETENTION_DAYS."
        ),
    ] = None,
    token_days: Annotated[
        int | None,
        typer.Option(
            "--token-days",
            min=0,
            help="For token_issued events; default CONNECTORS_TOKEN_EVENT_RETENTION_DAYS.",
        ),
    ] = None,
    as_json: bool = JsonOption,
) -> None:
    """Delete events older than the retention (90 days; token_issued events 7), in batches,
    and webhook deliveries finished that long ago; never one still pending. 0 days keeps all.
    The refresher does the same hourly: use this for a first clean-up, or from cron where no
    refresher runs."""

    async def work(_: AsyncSession, runtime: Runtime) -> Pruned:
        overrides: dict[str, int] = {}
        if days is not None:
            overrides["event_retention_days"] = days
        if token_days is not None:
            overrides["token_event_retention_days"] = token_days
        settings = runtime.settings.model_copy(update=overrides)
        return await prune_events(runtime.sessions, settings, organization_id=org)

    pruned = run_with_session(work).as_dict()
    emit(
        pruned,
        as_json,
        f"Deleted {pruned['events']} events, {pruned['token_events']} token_issued events and "
        f"{pruned['deliveries']} finished webhook deliveries.",
    )
