"""``connectors refresher``: the background refresher as its own process."""

from __future__ import annotations

import asyncio
import signal
from typing import Annotated

import typer
from sqlalchemy.ext.asyncio import AsyncSession

from personal_connectors.cli.context import run_with_session
from personal_connectors.cli.output import JsonOption, emit
from personal_connectors.logs import configure_logging
from personal_connectors.refresher.service import BackgroundRefresher
from personal_connectors.runtime import Runtime


def refresher(
    once: Annotated[
        bool, typer.Option("--once", help="Refresh what is due now, then exit (for cron).")
    ] = False,
    concurrency: Annotated[
        int | None,
        typer.Option("--concurrency", min=1, max=256, help="Refreshes at a time, in all."),
    ] = None,
    provider_concurrency: Annotated[
        int | None,
        typer.Option("--provider-concurrency", min=1, max=256, help="Per provider."),
    ] = None,
    org: Annotated[
        str | None,
        typer.Option("--org", help="Only this organization's connections (e.g. to catch up one)."),
    ] = None,
    as_json: bool = JsonOption,
) -> None:
    """Refresh tokens before they expire, and idle refresh tokens daily.

    Run one or several next to `connectors serve` (on PostgreSQL any number of instances share
    the work without refreshing anything twice), or start it inside `serve` with
    `--refresher`. SIGTERM or Ctrl-C stops claiming and lets refreshes in flight finish.
    """

    async def work(_: AsyncSession, runtime: Runtime) -> dict[str, float | int]:
        configure_logging(runtime.settings.log_level, runtime.settings.log_format)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        background = BackgroundRefresher(
            runtime,
            concurrency=concurrency,
            provider_concurrency=provider_concurrency,
            organization_id=org,
        )
        stats = await background.run(stop, once=once)
        return stats.as_dict()

    result = run_with_session(work)
    emit(
        result,
        as_json,
        ", ".join(f"{key} {value}" for key, value in result.items()),
    )
