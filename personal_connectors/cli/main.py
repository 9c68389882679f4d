"""The ``connectors`` command: serve, migrate, and operator commands (SPEC §4).

Only Typer is imported up front; each subcommand's module, and what it needs (the app, the
database layer, Alembic), is imported when that subcommand runs.
"""

from __future__ import annotations

import os
from typing import Annotated

import typer

from personal_connectors.cli.lazy import LazyGroup, LazySubcommand


class ConnectorsGroup(LazyGroup):
    lazy = {
        "orgs": LazySubcommand("personal_connectors.cli.identity:orgs", "Organizations."),
        "users": LazySubcommand(
            "personal_connectors.cli.identity:users", "Users and their memberships."
        ),
        "api-keys": LazySubcommand(
            "personal_connectors.cli.identity:api_keys", "API keys (shown once, stored hashed)."
        ),
        "apps": LazySubcommand(
            "personal_connectors.cli.apps:apps",
            "OAuth apps (client id and secret registered at a provider).",
        ),
        "providers": LazySubcommand(
            "personal_connectors.cli.providers:providers", "The provider catalog."
        ),
        "connections": LazySubcommand(
            "personal_connectors.cli.connections:connections", "Connected accounts."
        ),
        "keys": LazySubcommand(
            "personal_connectors.cli.keys:keys", "Encryption keys (CONNECTORS_ENCRYPTION_KEYS)."
        ),
        "webhooks": LazySubcommand(
            "personal_connectors.cli.webhooks:webhooks",
            "Organization webhook endpoints and their delivery.",
        ),
        "events": LazySubcommand(
            "personal_connectors.cli.webhooks:events",
            "The audit trail of connections: list, prune.",
        ),
        "refresher": LazySubcommand(
            "personal_connectors.cli.refresher:refresher",
            "Refresh tokens before they expire, and idle refresh tokens daily.",
        ),
    }


app = typer.Typer(
    cls=ConnectorsGroup,
    help="Personal Connectors: a self-hostable OAuth connection broker.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.command()
def serve(
    host: Annotated[
        str | None, typer.Option("--host", help="Default: CONNECTORS_HOST (127.0.0.1).")
    ] = None,
    port: Annotated[
        int | None,
        typer.Option("--port", min=1, max=65535, help="Default: CONNECTORS_PORT (8080)."),
    ] = None,
    workers: Annotated[int, typer.Option("--workers", min=1, max=64)] = 1,
    with_refresher: Annotated[
        bool,
        typer.Option("--refresher", help="Also run the background refresher (in every worker)."),
    ] = False,
) -> None:
    """Run the HTTP service (the embedded default is created and migrated first)."""
    import gc

    # Start-up builds many long-lived objects (modules, models, the app) and almost no cyclic
    # garbage: full collections over them while they are built only slow readiness. The app's
    # lifespan turns collection back on (cli.serving.settle_garbage_collector).
    gc.disable()
    # First, before anything imports prometheus-client: the workers' shared metrics folder.
    from personal_connectors.telemetry.folder import multiprocess_folder

    with multiprocess_folder():
        _serve(host, port, workers, with_refresher)


def _serve(host: str | None, port: int | None, workers: int, with_refresher: bool) -> None:
    import gc
    import logging

    import uvicorn
    from rich.markup import escape

    from personal_connectors.cli.context import load_settings, prepare_database
    from personal_connectors.cli.output import console, errors, fail
    from personal_connectors.config import base_url_mismatch
    from personal_connectors.crypto.keyring import KeyConfigurationError, load_keyring
    from personal_connectors.http.server import uvicorn_options
    from personal_connectors.logs import configure_logging
    from personal_connectors.providers.catalog import CatalogError, load_catalog

    if with_refresher:
        # Workers build their settings from the environment; this reaches all of them.
        os.environ["CONNECTORS_REFRESHER_EMBEDDED"] = "true"
    settings = load_settings()
    host = settings.host if host is None else host
    port = settings.port if port is None else port
    configure_logging(settings.log_level, settings.log_format)
    try:
        # Checked here, once, so workers never race to generate a key file.
        load_catalog(settings.providers_file)
        load_keyring(settings)
        if prepare_database(settings):
            # A migration leaves cyclic garbage; collected here rather than frozen for good
            # with what start-up keeps.
            gc.collect()
    except (CatalogError, KeyConfigurationError) as exc:
        fail(str(exc))
    mismatch = base_url_mismatch(settings, host, port)
    where = f"http://{host}:{port}"
    detail = f"(public URL {settings.base_url}, API docs at /docs)"
    if settings.log_format == "json":
        # Every line of the output is a JSON object: the banner and warning are log records.
        logger = logging.getLogger("personal_connectors.serve")
        if mismatch is not None:
            logger.warning("%s", mismatch)
        logger.info("Personal Connectors on %s %s", where, detail)
    else:
        if mismatch is not None:
            errors.print(
                f"[yellow]warning:[/yellow] {escape(mismatch)}", highlight=False, soft_wrap=True
            )
        console.print(
            f"Personal Connectors on [bold]{where}[/bold] {detail}\n"
            "First API key: connectors orgs create NAME → connectors users create EMAIL "
            "--org ORG_ID --role owner → connectors api-keys create --user USER_ID",
            highlight=False,
        )
    if workers > 1:
        # The workers are processes of their own, each settling its collector when its app has
        # started; this one only supervises them.
        gc.enable()
    uvicorn.run(
        "personal_connectors.cli.serving:create_served_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_config=None,
        access_log=False,
        server_header=False,
        ws="none",  # no WebSocket routes: spares loading a WebSocket implementation
        **uvicorn_options(settings),
    )


@app.command()
def migrate() -> None:
    """Bring the database schema up to date (Alembic)."""
    from personal_connectors.cli.context import load_settings
    from personal_connectors.cli.output import console
    from personal_connectors.storage.migrations import upgrade

    upgrade(load_settings())
    console.print("Database schema is up to date.")


def main() -> None:
    app()
