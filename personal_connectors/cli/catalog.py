"""``connectors providers|apps``: the provider catalog and the OAuth apps configured for it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy.ext.asyncio import AsyncSession

from personal_connectors.apps.service import OAuthAppService
from personal_connectors.cli.context import load_settings, run_with_session
from personal_connectors.cli.output import JsonOption, emit, emit_table, fail
from personal_connectors.identity.repository import IdentityRepository
from personal_connectors.models import OAuthApp
from personal_connectors.providers.catalog import (
    CatalogError,
    check_file,
    load_catalog,
    schema_document,
)
from personal_connectors.runtime import Runtime

providers = typer.Typer(help="The provider catalog.", no_args_is_help=True)
apps = typer.Typer(
    help="OAuth apps (client id and secret registered at a provider).", no_args_is_help=True
)


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


@apps.command("set")
def set_app(
    app_key: str,
    client_id: Annotated[str, typer.Option("--client-id")],
    client_secret: Annotated[str, typer.Option("--client-secret")],
    org: Annotated[str | None, typer.Option("--org", help="Only for this organization.")] = None,
    scopes: Annotated[
        str | None, typer.Option("--scopes", help='Space-separated, e.g. "repo read:user".')
    ] = None,
    params: Annotated[
        list[str] | None,
        typer.Option(
            "--param",
            help="An admin-set integration param as KEY=VALUE, e.g. "
            "issuer_host=login.example.com (repeatable).",
        ),
    ] = None,
    as_json: bool = JsonOption,
) -> None:
    """Configure the OAuth app for a provider, service-wide or for one organization."""
    scope_list = scopes.split() if scopes is not None else None
    integration_params: dict[str, str] = {}
    for item in params or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            fail(f"--param wants KEY=VALUE, got {item!r}")
        integration_params[key] = value

    async def work(session: AsyncSession, runtime: Runtime) -> tuple[OAuthApp, str]:
        if org is not None and await IdentityRepository(session).get_organization(org) is None:
            fail(f"no organization {org}")
        service = OAuthAppService(session, runtime.sealer, runtime.catalog)
        app = await service.configure(
            org,
            app_key,
            client_id=client_id,
            client_secret=client_secret,
            scopes=scope_list,
            integration_params=integration_params,
        )
        return app, runtime.settings.redirect_uri

    app, redirect_uri = run_with_session(work)
    emit(
        {
            "app_key": app.app_key,
            "client_id": app.client_id,
            "organization_id": app.organization_id,
            "scopes": app.scopes,
            "integration_params": app.integration_params or {},
            "redirect_uri": redirect_uri,
        },
        as_json,
        f"Configured {app.app_key} ({'organization ' + org if org else 'service-wide'}).\n"
        f"Register this redirect URI at the provider: {redirect_uri}",
    )
