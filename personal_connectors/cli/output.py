"""CLI output: one JSON value on stdout with ``--json``, text otherwise; errors on stderr."""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Sequence
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

console = Console()
errors = Console(stderr=True)

# Control (C0, C1) and format characters (bidirectional overrides, zero-width ones).
_CONTROL_CATEGORIES = frozenset({"Cc", "Cf"})

JsonOption = typer.Option(False, "--json", help="Print one JSON value on stdout and nothing else.")


def shown(value: object, *, keep: str = "") -> str:
    """``value`` as inert text for the terminal: control and format characters (escape
    sequences such as an OSC-8 link, bidirectional overrides) written out as ``\\x1b`` and the
    like, except those in ``keep``; Rich markup escaped by the caller's ``escape`` or by printing
    with ``markup=False``. Provider-supplied names and every other stored text pass here."""
    return "".join(
        char
        if char in keep or unicodedata.category(char) not in _CONTROL_CATEGORIES
        else char.encode("unicode_escape").decode("ascii")
        for char in str(value)
    )


def emit(value: Any, as_json: bool, text: str | None = None) -> None:
    if as_json:
        typer.echo(json.dumps(value, default=str))
    elif text is not None:
        # The text holds stored values (names, emails, URLs): printed as it is, never as markup.
        console.print(shown(text, keep="\n"), markup=False)
    else:
        console.print(value)


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
            *("" if row.get(column) is None else escape(shown(row[column])) for column in columns)
        )
    console.print(table)


def fail(message: str, code: int = 1) -> NoReturn:
    # Escaped (a message may hold `[...]`) and never wrapped: one fault, one greppable line.
    text = escape(shown(message, keep="\n"))
    errors.print(f"[red]error:[/red] {text}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)
