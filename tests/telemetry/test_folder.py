"""The metrics folder ``serve`` gives its workers (``telemetry.folder``): new and empty at each
start, named in the environment while ``serve`` runs, removed when it ends; one left behind by a
``serve`` that was killed is removed by the next."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from personal_connectors.telemetry.folder import (
    MULTIPROCESS_ENV,
    OWNER_FILE,
    PREFIX,
    multiprocess_folder,
)


def test_a_private_folder_for_the_run_and_none_left_after_it() -> None:
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], check=True,
                          capture_output=True, text=True)  # fmt: skip
    abandoned = Path(tempfile.mkdtemp(prefix=PREFIX))
    (abandoned / OWNER_FILE).write_text(gone.stdout.strip())
    (abandoned / "counter_123.db").write_bytes(b"old values")
    before = os.environ.get(MULTIPROCESS_ENV)

    with multiprocess_folder() as folder:
        assert os.environ[MULTIPROCESS_ENV] == folder
        path = Path(folder)
        assert path.is_dir() and (path.stat().st_mode & 0o077) == 0
        assert [p.name for p in path.iterdir()] == [OWNER_FILE]
        assert (path / OWNER_FILE).read_text() == str(os.getpid())
        assert not abandoned.exists()  # its serve is gone

    assert not path.exists()
    assert os.environ.get(MULTIPROCESS_ENV) == before
