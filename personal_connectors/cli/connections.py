"""``connectors connections``: what users have connected; importing and exporting them."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy.ext.asyncio import AsyncSession

from personal_connectors.cli.context import run_with_session
from personal_connectors.cli.output import JsonOption, emit, emit_table, errors, fail
from personal_connectors.connections.repository import ConnectionRepository
from personal_connectors.connections.schemas import ConnectionOut
from personal_connectors.models import Connection
from personal_connectors.portability.envelope import check_passphrase, is_sealed_file
from personal_connectors.portability.errors import PortabilityError
from personal_connectors.portability.exporter import ConnectionExporter
from personal_connectors.portability.importer import (
    ConnectionImporter,
    ImportReport,
    read_source,
)
from personal_connectors.runtime import Runtime

connections = typer.Typer(no_args_is_help=True)

DEFAULT_PASSPHRASE_ENV = "CONNECTORS_EXPORT_PASSPHRASE"


@contextmanager
def progress_bar(description: str, total: int, enabled: bool) -> Iterator[Callable[[int], None]]:
    """A Rich progress bar on stderr (stdout stays for the result); a no-op when disabled."""
    if not enabled:
        yield lambda _: None
        return
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=errors,
    ) as bar:
        task = bar.add_task(description, total=total)
        yield lambda advance: bar.advance(task, advance)


def read_passphrase(variable: str) -> str:
    """The passphrase from the named environment variable: argv is visible to every local user."""
    value = os.environ.get(variable)
    if not value:
        fail(
            f"the environment variable {variable} holds no passphrase; set it "
            "(the passphrase is never taken from the command line)"
        )
    return value


PassphraseEnv = Annotated[
    str | None,
    typer.Option(
        "--passphrase-env",
        metavar="VAR",
        help=f"Environment variable holding the passphrase (default {DEFAULT_PASSPHRASE_ENV}).",
    ),
]


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


@connections.command("import")
def import_connections(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, metavar="FILE")],
    org: Annotated[str, typer.Option("--org", help="The organization to import into.")],
    passphrase_env: PassphraseEnv = None,
    as_json: bool = JsonOption,
) -> None:
    """Import connections from JSON Lines, or from an encrypted export.

    Re-importing an account (same user, provider and account id) updates its connection. Bad
    lines are reported by number and import nothing; the exit status is non-zero if any failed.
    """
    try:
        passphrase = None
        if passphrase_env is not None or is_sealed_file(file):
            passphrase = read_passphrase(passphrase_env or DEFAULT_PASSPHRASE_ENV)
        source = read_source(file, passphrase)
    except (OSError, PortabilityError) as exc:
        fail(f"{file}: {exc}")

    async def work(session: AsyncSession, runtime: Runtime) -> ImportReport:
        with progress_bar("Importing", source.total, not as_json) as advance:
            return await ConnectionImporter(session, runtime, org).run(source.lines, advance)

    report = run_with_session(work)
    result = report.as_dict()
    if as_json:
        emit(result, as_json)
    else:
        if report.errors:
            emit_table(result["errors"], ["line", "message"], False, "Lines not imported")
        emit(
            f"Imported {report.imported}, updated {report.updated}, failed {report.failed}.", False
        )
    if report.failed:
        fail(f"{report.failed} line{'' if report.failed == 1 else 's'} not imported")


@connections.command("export")
def export_connections(
    file: Annotated[Path, typer.Argument(dir_okay=False, metavar="FILE")],
    org: Annotated[str, typer.Option("--org", help="The organization to export.")],
    passphrase_env: PassphraseEnv = None,
    as_json: bool = JsonOption,
) -> None:
    """Export the organization's live connections, tokens included, encrypted with a passphrase.

    The file is in the import format inside an scrypt + AES-256-GCM envelope; `connections
    import FILE --passphrase-env VAR` reads it back. There is no unencrypted export.
    """
    passphrase = read_passphrase(passphrase_env or DEFAULT_PASSPHRASE_ENV)
    try:
        check_passphrase(passphrase)
    except PortabilityError as exc:
        fail(str(exc))

    async def work(session: AsyncSession, runtime: Runtime) -> int:
        exporter = ConnectionExporter(session, runtime)
        try:
            total = await exporter.count(org)
            with progress_bar("Exporting", total, not as_json) as advance:
                return await exporter.export(file, org, passphrase, advance)
        except PortabilityError as exc:
            fail(str(exc))

    exported = run_with_session(work)
    emit(
        {"exported": exported, "file": str(file)},
        as_json,
        f"Exported {exported} connection{'' if exported == 1 else 's'} to {file} (encrypted).",
    )
