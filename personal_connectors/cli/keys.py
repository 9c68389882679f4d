"""``connectors keys``: generating encryption keys and moving stored secrets onto the newest."""

from __future__ import annotations

from typing import Annotated

import typer
from sqlalchemy.ext.asyncio import AsyncSession

from personal_connectors.cli.connections import progress_bar
from personal_connectors.cli.context import run_with_session
from personal_connectors.cli.output import JsonOption, emit, errors
from personal_connectors.crypto.keyring import generate_key
from personal_connectors.keys.rotation import DEFAULT_BATCH_SIZE, KeyRotator, RotationReport
from personal_connectors.runtime import Runtime

keys = typer.Typer(no_args_is_help=True)


@keys.command("generate")
def generate(as_json: bool = JsonOption) -> None:
    """Print a new random key (base64 of 32 bytes); nothing is stored."""
    key = generate_key()
    if as_json:
        emit({"key": key}, as_json)
        return
    typer.echo(key)
    errors.print(
        "Put it first in CONNECTORS_ENCRYPTION_KEYS (keep the old keys after it), restart the "
        "service, then run `connectors keys rotate`.",
        highlight=False,
    )


@keys.command("rotate")
def rotate(
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, max=10_000, help="Rows per transaction.")
    ] = DEFAULT_BATCH_SIZE,
    as_json: bool = JsonOption,
) -> None:
    """Re-encrypt every stored secret under the newest key (the first configured).

    Restart every instance with the new key first (old keys after it), then run this; it is
    safe while the service runs, and running it again finishes an interrupted rotation. When
    it reports nothing remaining, the old keys can be removed from the configuration.
    """

    async def work(session: AsyncSession, runtime: Runtime) -> RotationReport:
        rotator = KeyRotator(session, runtime.sealer, batch_size=batch_size)
        total = await rotator.remaining()
        with progress_bar("Re-encrypting", total, not as_json) as advance:
            return await rotator.run(advance)

    report = run_with_session(work)
    if report.unreadable:
        errors.print(
            f"[yellow]warning:[/yellow] {report.unreadable} row(s) could not be opened with any "
            "configured key and stay as they are; keep their key configured until they are "
            "rotated or deleted.",
            highlight=False,
        )
    result = report.as_dict()
    emit(
        result,
        as_json,
        f"Rotated {result['rotated']}, skipped {result['skipped']}; "
        f"{result['remaining']} row(s) still on an old key.",
    )
