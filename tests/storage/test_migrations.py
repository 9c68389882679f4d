"""Migrations: the schema check that spares `serve` loading Alembic agrees with Alembic."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from alembic.script import ScriptDirectory

from personal_connectors.config import Settings
from personal_connectors.storage.migrations import (
    alembic_config,
    head_revisions,
    sqlite_schema_is_current,
    upgrade,
)


def test_the_heads_read_from_the_version_files_are_alembics_heads(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path)  # type: ignore[call-arg]
    script = ScriptDirectory.from_config(alembic_config(settings))
    assert head_revisions() == frozenset(script.get_heads())


def test_a_sqlite_file_is_current_only_once_migrated_to_head(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path)  # type: ignore[call-arg]
    assert not sqlite_schema_is_current(settings.embedded_database)  # no file yet
    upgrade(settings, revision="0001")
    assert not sqlite_schema_is_current(settings.embedded_database)
    upgrade(settings)
    assert sqlite_schema_is_current(settings.embedded_database)


def test_preparing_a_current_embedded_database_does_not_load_alembic(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONNECTORS_")}
    env["CONNECTORS_DATA_DIR"] = str(tmp_path)
    probe = (
        "import sys; from personal_connectors.cli.context import load_settings, prepare_database; "
        "prepare_database(load_settings()); print('alembic' in sys.modules)"
    )

    def alembic_loaded() -> str:
        return subprocess.run(
            [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
        ).stdout.strip()

    assert alembic_loaded() == "True"  # a new file: created and migrated
    assert alembic_loaded() == "False"  # at head: checked without Alembic
