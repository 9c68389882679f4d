"""A Typer group whose subcommands are imported when run, so `connectors --help` stays fast.

Each subcommand names the module attribute that implements it (a ``typer.Typer`` group or a
command function) and the one-line help shown in the command list; the module is imported
only when that subcommand is invoked or its own help is asked for.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

import typer
from typer.core import TyperCommand, TyperGroup


@dataclass(frozen=True)
class LazySubcommand:
    target: str  # "package.module:attribute"
    help: str


class LazyGroup(TyperGroup):
    """Subclass it with ``lazy`` filled in and pass it as ``typer.Typer(cls=...)``."""

    lazy: ClassVar[Mapping[str, LazySubcommand]] = {}
    _listing = False  # true while the help page lists commands (see format_help)

    def list_commands(self, ctx: Any) -> list[str]:
        return [*self.lazy, *super().list_commands(ctx)]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        entry = self.lazy.get(cmd_name)
        if entry is None:
            return super().get_command(ctx, cmd_name)
        if self._listing:  # the command list needs names and one-liners, not the modules
            return TyperCommand(name=cmd_name, help=entry.help)
        return _load(cmd_name, entry)

    def format_help(self, ctx: Any, formatter: Any) -> None:
        with self._listing_only():
            super().format_help(ctx, formatter)

    @contextmanager
    def _listing_only(self) -> Iterator[None]:
        self._listing = True
        try:
            yield
        finally:
            self._listing = False


def _load(name: str, entry: LazySubcommand) -> Any:
    module_name, _, attribute = entry.target.partition(":")
    target: typer.Typer | Callable[..., Any] = getattr(
        importlib.import_module(module_name), attribute
    )
    holder = typer.Typer()
    if isinstance(target, typer.Typer):  # mounted as add_typer would, even with one command
        holder.add_typer(target, name=name, help=entry.help)
        group = typer.main.get_command(holder)
        assert isinstance(group, TyperGroup)
        return group.commands[name]
    holder.command(name)(target)  # a single command function: its docstring is its help
    return typer.main.get_command(holder)
