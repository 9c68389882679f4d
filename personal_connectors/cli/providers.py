"""``connectors providers``: the provider catalog (built-in and from the providers file)."""

from __future__ import annotations

from pathlib import Path

import typer

from personal_connectors.cli.context import load_settings
from personal_connectors.cli.output import JsonOption, emit, emit_table, fail
from personal_connectors.providers.catalog import (
    CatalogError,
    check_file,
    load_catalog,
    schema_document,
)

providers = typer.Typer(no_args_is_help=True)


@providers.command("list")
def list_providers(as_json: bool = JsonOption) -> None:
    """List the providers in the catalog (built-in and from CONNECTORS_PROVIDERS_FILE)."""
    settings = load_settings()
    try:
        catalog = load_catalog(settings.providers_file)
    except CatalogError as exc:
        fail(str(exc))
    rows = [
        {
            "key": e.key,
            "display_name": e.display_name,
            "auth_mode": e.auth_mode,
            "category": e.category,
        }
        for e in catalog
    ]
    emit_table(rows, ["key", "display_name", "auth_mode", "category"], as_json, "Providers")


@providers.command("check")
def check_providers(file: Path, as_json: bool = JsonOption) -> None:
    """Validate a providers file; exits non-zero naming the entry and field of every fault."""
    try:
        entries = check_file(file)
    except CatalogError as exc:
        fail(str(exc))
    emit(
        {"file": str(file), "valid": True, "entries": sorted(entries)},
        as_json,
        f"{file}: {len(entries)} valid entr{'y' if len(entries) == 1 else 'ies'}",
    )


@providers.command("schema")
def provider_schema(as_json: bool = JsonOption) -> None:
    """Print the JSON Schema of a providers file (always JSON), for editors and CI checks.

    The shipped copy is personal_connectors/providers/provider.schema.json; regenerate it with
    ``connectors providers schema > personal_connectors/providers/provider.schema.json``.
    """
    typer.echo(schema_document(), nl=False)
