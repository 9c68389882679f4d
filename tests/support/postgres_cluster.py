"""A private PostgreSQL cluster for one test: Debian's server binaries, a fresh data folder, a
free loopback port. A test restarts it at will; the shared server on 5432 that the rest of the
suite uses is never touched.

initdb and the server refuse to run as root: as root they run as the ``postgres`` user (which
Debian's package creates), in a folder that user owns.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.support.oidc import free_port

POSTGRES_BIN = Path(os.environ.get("PC_TEST_POSTGRES_BIN", "/usr/lib/postgresql/15/bin"))


class PrivateCluster:
    def __init__(self, *, max_connections: int = 300) -> None:
        self.port = free_port()
        self.max_connections = max_connections
        self.root = Path(tempfile.mkdtemp(prefix="pc-postgres-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self._as: list[str] = []
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(self.root, user.pw_uid, user.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> PrivateCluster:
        if not (POSTGRES_BIN / "initdb").exists():
            raise RuntimeError(
                f"PostgreSQL's server binaries are not in {POSTGRES_BIN} "
                "(apt-get install postgresql-15, or set PC_TEST_POSTGRES_BIN)"
            )
        self._run(
            POSTGRES_BIN / "initdb",
            "-D",
            self.data,
            "-U",
            "postgres",
            "--auth=trust",
            "--no-sync",
        )
        self._ctl("start")
        return self

    def restart(self) -> None:
        """A fast restart: every connection is cut, the server is back when this returns."""
        self._ctl("restart", "-m", "fast")

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run(POSTGRES_BIN / "pg_ctl", "-D", self.data, "stop", "-m", "immediate", "-w")

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def create_database(self, name: str) -> str:
        subprocess.run(
            ["psql", self.url(), "-v", "ON_ERROR_STOP=1", "-qc", f'CREATE DATABASE "{name}"'],
            check=True,
            capture_output=True,
            timeout=60,
        )
        return self.url(name)

    def _ctl(self, action: str, *args: str) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} "
            f"-c max_connections={self.max_connections} -c fsync=off"
        )
        self._run(
            POSTGRES_BIN / "pg_ctl",
            "-D",
            self.data,
            "-l",
            self.log,
            "-o",
            options,
            "-w",
            "-t",
            "60",
            action,
            *args,
        )

    def _run(self, *command: str | Path) -> None:
        result = subprocess.run(
            [*self._as, *(str(part) for part in command)],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=self.root,
        )
        if result.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(
                f"{Path(str(command[0])).name} failed ({result.returncode}):\n"
                f"{result.stdout}{result.stderr}\n{log}"
            )
