"""The metrics folder ``serve`` gives its workers (``telemetry.folder``): new and empty at each
start, named in the environment while ``serve`` runs, removed when it ends; one left behind by a
``serve`` that was killed is removed by the next."""

from __future__ import annotations

import os
import signal
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


def test_sigterm_removes_the_folder_and_still_ends_the_process_as_sigterm_does() -> None:
    program = (
        "import os, signal\n"
        "from personal_connectors.telemetry.folder import multiprocess_folder\n"
        "with multiprocess_folder() as folder:\n"
        "    print(folder, flush=True)\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    signal.pause()\n"
        "print('not reached', flush=True)\n"
    )
    ran = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=30
    )
    assert ran.returncode == -signal.SIGTERM, ran.stderr
    folder = ran.stdout.strip()
    assert folder.startswith(tempfile.gettempdir()) and "not reached" not in folder
    assert not Path(folder).exists()
