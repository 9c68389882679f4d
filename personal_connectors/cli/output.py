"""CLI output: one JSON value on stdout with ``--json``, text otherwise; errors on stderr."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

console = Console()
errors = Console(stderr=True)

JsonOption = typer.Option(False, "--json", help="Print one JSON value on stdout and nothing else.")


def emit(value: Any, as_json: bool, text: str | None = None) -> None:
    if as_json:
        typer.echo(json.dumps(value, default=str))
    else:
        console.print(text if text is not None else value)


def emit_table(
    rows: Sequence[dict[str, Any]], columns: Sequence[str], as_json: bool, title: str
) -> None:
    if as_json:
        typer.echo(json.dumps(list(rows), default=str))
        return
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(
            *("" if row.get(column) is None else str(row.get(column)) for column in columns)
        )
    console.print(table)


def fail(message: str, code: int = 1) -> NoReturn:
    # Escaped (a message may hold `[...]`) and never wrapped: one fault, one greppable line.
    errors.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)
