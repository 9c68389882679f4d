"""Running a CLI command's async work against the configured database."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from personal_connectors import config
from personal_connectors.cli.output import fail
from personal_connectors.config import Settings
from personal_connectors.crypto.keyring import KeyConfigurationError
from personal_connectors.exceptions import APIError
from personal_connectors.identity.exceptions import IdentityError
from personal_connectors.providers.catalog import CatalogError
from personal_connectors.runtime import Runtime
from personal_connectors.storage.migrations import sqlite_schema_is_current, upgrade

T = TypeVar("T")


def load_settings() -> Settings:
    try:
        return config.load_settings()
    except config.ConfigurationError as exc:
        fail(f"invalid configuration: {exc}")


def prepare_database(settings: Settings) -> bool:
    """The embedded default needs no set-up: create and migrate it on first use. Whether it
    was migrated now."""
    if settings.is_embedded and not sqlite_schema_is_current(settings.embedded_database):
        upgrade(settings)
        return True
    return False


def run_with_session(work: Callable[[AsyncSession, Runtime], Awaitable[T]]) -> T:
    settings = load_settings()

    async def main() -> T:
        runtime = Runtime.start(settings)
        try:
            async with runtime.sessions() as session:
                return await work(session, runtime)
        finally:
            await runtime.close()

    try:
        prepare_database(settings)
        return asyncio.run(main())
    except (IdentityError, KeyConfigurationError, CatalogError) as exc:
        fail(str(exc))
    except APIError as exc:
        fail(exc.system_message)
