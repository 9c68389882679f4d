"""The ``connectors`` command: serve, migrate, and operator commands (SPEC §4)."""

from __future__ import annotations

import os
from typing import Annotated

import typer
import uvicorn

from personal_connectors.cli.catalog import apps, providers
from personal_connectors.cli.connections import connections
from personal_connectors.cli.context import load_settings, prepare_database
from personal_connectors.cli.identity import api_keys, orgs, users
from personal_connectors.cli.keys import keys
from personal_connectors.cli.output import console, fail
from personal_connectors.cli.refresher import refresher
from personal_connectors.cli.webhooks import events, webhooks
from personal_connectors.crypto.keyring import KeyConfigurationError, load_keyring
from personal_connectors.logs import configure_logging
from personal_connectors.providers.catalog import CatalogError, load_catalog
from personal_connectors.serving import uvicorn_options
from personal_connectors.storage.migrations import upgrade

app = typer.Typer(
    help="Personal Connectors: a self-hostable OAuth connection broker.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(orgs, name="orgs")
app.add_typer(users, name="users")
app.add_typer(api_keys, name="api-keys")
app.add_typer(apps, name="apps")
app.add_typer(providers, name="providers")
app.add_typer(connections, name="connections")
app.add_typer(keys, name="keys")
app.add_typer(webhooks, name="webhooks")
app.add_typer(events, name="events")
app.command("refresher")(refresher)


@app.command()
def serve(
    host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535)] = 8080,
    workers: Annotated[int, typer.Option("--workers", min=1, max=64)] = 1,
    with_refresher: Annotated[
        bool,
        typer.Option("--refresher", help="Also run the background refresher (in every worker)."),
    ] = False,
) -> None:
    """Run the HTTP service (the embedded default is created and migrated first)."""
    if with_refresher:
        # Workers build their settings from the environment; this reaches all of them.
        os.environ["CONNECTORS_REFRESHER_EMBEDDED"] = "true"
    settings = load_settings()
    configure_logging(settings.log_level)
    try:
        # Checked here, once, so workers never race to generate a key file.
        load_catalog(settings.providers_file)
        load_keyring(settings)
        prepare_database(settings)
    except (CatalogError, KeyConfigurationError) as exc:
        fail(str(exc))
    console.print(
        f"Personal Connectors on [bold]http://{host}:{port}[/bold] "
        f"(public URL {settings.base_url}, API docs at /docs)\n"
        "First API key: connectors orgs create NAME → connectors users create EMAIL --org ORG_ID "
        "--role owner → connectors api-keys create --user USER_ID",
        highlight=False,
    )
    uvicorn.run(
        "personal_connectors.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_config=None,
        access_log=False,
        server_header=False,
        **uvicorn_options(settings),
    )


@app.command()
def migrate() -> None:
    """Bring the database schema up to date (Alembic)."""
    settings = load_settings()
    upgrade(settings)
    console.print("Database schema is up to date.")


def main() -> None:
    app()
