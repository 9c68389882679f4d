"""Alembic migrations: the only way the schema changes. ``upgrade()`` runs them to head.

Alembic is imported only when a migration actually runs: ``schema_is_current`` answers the
common case (the embedded SQLite file already at head) from the version files' own
declarations and the database's ``alembic_version`` row, without loading Alembic.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING

from personal_connectors.config import Settings

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).parent
_DECLARATION = re.compile(r'^(down_revision|revision)\s*(?::[^=]*)?=\s*"([^"]+)"', re.MULTILINE)


def alembic_config(settings: Settings) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["settings"] = settings
    return config


def upgrade(settings: Settings, revision: str = "head") -> None:
    """Bring the schema to ``revision``; safe to call on every start (a no-op when current)."""
    from alembic import command

    command.upgrade(alembic_config(settings), revision)


async def upgrade_async(settings: Settings) -> None:
    await asyncio.to_thread(upgrade, settings)


def head_revisions() -> frozenset[str]:
    """The revisions no other one builds on, as the version files declare them."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (MIGRATIONS_DIR / "versions").glob("*.py"):
        for name, value in _DECLARATION.findall(path.read_text(encoding="utf-8")):
            (revisions if name == "revision" else parents).add(value)
    return frozenset(revisions - parents)


def sqlite_schema_is_current(database: Path) -> bool:
    """True when the SQLite file exists and its ``alembic_version`` is the head."""
    if not database.is_file():
        return False
    try:
        connection = sqlite3.connect(f"{database.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error:
        return False
    try:
        rows = connection.execute("SELECT version_num FROM alembic_version").fetchall()
    except sqlite3.Error:
        return False
    finally:
        connection.close()
    return frozenset(row[0] for row in rows) == head_revisions()
