"""``connectors connections``: what users have connected."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

import typer
from sqlalchemy.ext.asyncio import AsyncSession

from personal_connectors.cli.context import run_with_session
from personal_connectors.cli.output import JsonOption, emit_table
from personal_connectors.connections.repository import ConnectionRepository
from personal_connectors.connections.schemas import ConnectionOut
from personal_connectors.models import Connection
from personal_connectors.runtime import Runtime

connections = typer.Typer(help="Connected accounts.", no_args_is_help=True)


@connections.command("list")
def list_connections(
    org: Annotated[str | None, typer.Option("--org")] = None,
    user: Annotated[str | None, typer.Option("--user")] = None,
    as_json: bool = JsonOption,
) -> None:
    """List live connections (never a token)."""

    async def work(session: AsyncSession, _: Runtime) -> Sequence[Connection]:
        return await ConnectionRepository(session).list_all(org, user)

    rows = [
        {
            **ConnectionOut.of(c).model_dump(mode="json"),
            "organization_id": c.organization_id,
            "user_id": c.user_id,
        }
        for c in run_with_session(work)
    ]
    emit_table(
        rows,
        ["id", "app_key", "account_email", "status", "user_id", "organization_id"],
        as_json,
        "Connections",
    )
