"""The embedded SQLite database and its data folder are readable by their owner only: they hold
sealed tokens, key digests and (when generated) the encryption key."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def migrate(data_dir: Path) -> None:
    """``connectors migrate`` on the embedded default, under the usual umask 022."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONNECTORS_")}
    env["CONNECTORS_DATA_DIR"] = str(data_dir)
    result = subprocess.run(
        [sys.executable, "-m", "personal_connectors", "migrate"],
        env=env,
        cwd=data_dir.parent,
        capture_output=True,
        text=True,
        timeout=120,
        umask=0o022,
    )
    assert result.returncode == 0, result.stderr[-3000:]


def test_a_new_data_folder_and_database_are_private(tmp_path: Path) -> None:
    data = tmp_path / "data"
    migrate(data)
    assert mode(data) == 0o700
    database = data / "connectors.db"
    assert mode(database) == 0o600
    for companion in (data / "connectors.db-wal", data / "connectors.db-shm"):
        if companion.exists():
            assert mode(companion) == 0o600, companion.name
    assert all(mode(each) & 0o077 == 0 for each in data.iterdir())


def test_an_existing_world_readable_database_is_narrowed_to_its_owner(tmp_path: Path) -> None:
    data = tmp_path / "data"
    migrate(data)
    data.chmod(0o755)
    (data / "connectors.db").chmod(0o644)
    migrate(data)
    assert mode(data) == 0o700
    assert mode(data / "connectors.db") == 0o600
