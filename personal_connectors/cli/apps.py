"""``connectors apps``: the OAuth apps (client id and secret) configured for the catalog."""

from __future__ import annotations

from typing import Annotated

import typer
from sqlalchemy.ext.asyncio import AsyncSession

from personal_connectors.apps.service import OAuthAppService
from personal_connectors.cli.context import run_with_session
from personal_connectors.cli.output import JsonOption, emit, emit_table, fail
from personal_connectors.identity.repository import IdentityRepository
from personal_connectors.models import OAuthApp
from personal_connectors.runtime import Runtime

apps = typer.Typer(no_args_is_help=True)


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


@apps.command("list")
def list_apps(
    org: Annotated[
        str | None, typer.Option("--org", help="Those in effect for this organization.")
    ] = None,
    as_json: bool = JsonOption,
) -> None:
    """List the OAuth apps (never a client secret): all of them, or those in effect for --org
    (its own where it has one, else the service-wide one)."""

    async def work(session: AsyncSession, runtime: Runtime) -> list[dict[str, object]]:
        service = OAuthAppService(session, runtime.sealer, runtime.catalog)
        if org is not None:
            if await IdentityRepository(session).get_organization(org) is None:
                fail(f"no organization {org}")
            found = await service.visible_to(org)
        else:
            found = list(await service.every())
        return [
            {
                "app_key": app.app_key,
                "client_id": app.client_id,
                "organization_id": app.organization_id,
                "scopes": app.scopes,
                "integration_params": app.integration_params or {},
            }
            for app in found
        ]

    emit_table(
        run_with_session(work),
        ["app_key", "client_id", "organization_id", "scopes"],
        as_json,
        "OAuth apps",
    )
