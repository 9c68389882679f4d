"""Run the service as a real process (``connectors serve``) on a loopback port, as users do."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from personal_connectors.config import Settings
from personal_connectors.runtime import Runtime
from tests.support import outputs, web

T = TypeVar("T")
START_TIMEOUT_S = 60.0  # the shared test machine can be slow to start a process
TEST_ENCRYPTION_KEY = "dGVzdC1rZXktMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDA="  # 32 bytes, tests only


def postgres_admin_url() -> str:
    return os.environ.get("PC_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432")


def create_postgres_database(prefix: str = "pc_test") -> str:
    """A fresh, empty database for one test session; returns its plain URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    psql("postgres", f'CREATE DATABASE "{name}"')
    return f"{postgres_admin_url()}/{name}"


def drop_postgres_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    psql("postgres", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def psql(database: str, sql: str) -> None:
    subprocess.run(
        ["psql", f"{postgres_admin_url()}/{database}", "-v", "ON_ERROR_STOP=1", "-qc", sql],
        check=True,
        capture_output=True,
        timeout=60,
    )


@dataclass
class ServiceProcess:
    """A running ``connectors serve`` and what the tests need to reach it."""

    port: int
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    extra_args: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        # The tests' providers and receivers listen on http://127.0.0.1: the operator's
        # development setting allows that; a test of the outbound guard passes "false".
        self.env.setdefault("CONNECTORS_OUTBOUND_ALLOW_INTERNAL", "true")

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api(self) -> str:
        return f"{self.base_url}/v1/personal-connectors"

    def settings(self) -> Settings:
        scoped = {
            k[len("CONNECTORS_") :].lower(): v
            for k, v in self.env.items()
            if k.startswith("CONNECTORS_")
        }
        return Settings(_env_file=None, **scoped)  # type: ignore[call-arg]

    def start(self) -> ServiceProcess:
        outputs.RECORD.watch(self.log_path, f"server log {self.log_path}")
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "personal_connectors",
                "serve",
                "--port",
                str(self.port),
                *self.extra_args,
            ],
            env={**os.environ, **self.env},
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"service exited early:\n{self.log_path.read_text()[-3000:]}")
            try:
                if web.get(f"{self.base_url}/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"service did not become ready:\n{self.log_path.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def run_db(self, work: Callable[[AsyncSession, Runtime], Awaitable[T]]) -> T:
        """Run ``work`` in this process against the service's database, with its keys."""

        async def main() -> T:
            runtime = Runtime.start(self.settings())
            try:
                async with runtime.sessions() as session:
                    return await work(session, runtime)
            finally:
                await runtime.close()

        return asyncio.run(main())

    def cli(
        self, *args: str, check: bool = True, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """``connectors ARGS`` with this service's environment (and ``env`` on top)."""
        return outputs.run(
            [sys.executable, "-m", "personal_connectors", *args],
            f"connectors {' '.join(args[:2])}",
            env={**os.environ, **self.env, **(env or {})},
            timeout=60,
            check=check,
        )


def client_headers(api_key: str) -> dict[str, Any]:
    return {"X-API-Key": api_key}


def service_env(workdir: Path, port: int, **settings: str) -> dict[str, str]:
    """The settings every test service starts with (its own data folder, its loopback base URL,
    the tests' key), then ``settings`` (``CONNECTORS_…`` names)."""
    return {
        "CONNECTORS_DATA_DIR": str(workdir / "data"),
        "CONNECTORS_BASE_URL": f"http://127.0.0.1:{port}",
        "CONNECTORS_ENCRYPTION_KEYS": TEST_ENCRYPTION_KEY,
        **settings,
    }


@contextmanager
def running_service(
    backend: str,
    port: int,
    env: dict[str, str],
    log_path: Path,
    extra_args: list[str] | None = None,
) -> Iterator[ServiceProcess]:
    """``connectors serve`` on ``backend`` ("sqlite" or "postgres"), stopped at the end. On
    PostgreSQL it gets a database of its own (its URL added to ``env``), migrated before the
    start and dropped after the stop."""
    database_url = None
    if backend == "postgres":
        database_url = create_postgres_database()
        env["CONNECTORS_DATABASE_URL"] = database_url
        ServiceProcess(port, env, log_path).cli("migrate")
    process = ServiceProcess(port, env, log_path, extra_args=list(extra_args or [])).start()
    try:
        yield process
    finally:
        process.stop()
        if database_url:
            drop_postgres_database(database_url)
