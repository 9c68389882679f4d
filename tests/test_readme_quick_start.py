"""The README's quick start works as written.

Its `sh` code blocks are taken from README.md and run unchanged, each in the terminal the
README gives it: the local provider (`scripts/local-oidc`) and the service (`scripts/serve`)
as long-running processes, the rest in one shell that keeps its variables, as a person's
third terminal would. The only changes are the documented settings that move the ports
(`OIDC_PORT`, `CONNECTORS_PORT`, `CONNECTORS_BASE_URL`), so that the test runs beside others.
The browser step is done by `login_and_consent` at the real provider; the last block's token
must then work at the provider itself.

It runs in a scratch folder that links to this checkout's code, scripts and `.venv`, so the
`.env`, `providers.yaml` and `data/` it writes never touch the checkout.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import web
from tests.support.oidc import ensure_node_modules, free_port, login_and_consent

ROOT = Path(__file__).resolve().parent.parent
LINKED = ("scripts", "personal_connectors", "tests", "pyproject.toml", "uv.lock", ".venv")
START_TIMEOUT_S = 90.0  # scripts/setup, npm and the first start on a busy 2-core machine
STEP_TIMEOUT_S = 120.0
DONE = "__quick_start_block_done__"


def readme_blocks(heading: str) -> list[str]:
    """The `sh` blocks of the README section whose heading starts with ``heading``, in order."""
    text = (ROOT / "README.md").read_text()
    section = text.split(f"\n## {heading}", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)```", section, re.DOTALL)


def quick_start_blocks() -> list[str]:
    return readme_blocks("Quick start")


class Terminal:
    """One bash that runs blocks in turn and keeps its variables between them."""

    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            ["bash", "--noprofile", "--norc"],
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def run(self, block: str) -> str:
        """Run a block as typed; return its output, failing unless its last command succeeded."""
        assert self.process.stdin is not None
        self.process.stdin.write(f"{block}\necho {DONE} $?\n")
        self.process.stdin.flush()
        output: list[str] = []
        deadline = time.monotonic() + STEP_TIMEOUT_S
        while True:
            line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
            if line is None:
                raise AssertionError(f"the shell ended:\n{''.join(output)}")
            if line.startswith(DONE):
                status = line.split()[1]
                assert status == "0", f"exit status {status}:\n{''.join(output)}\n{block}"
                return "".join(output)
            output.append(line)

    def close(self) -> None:
        _stop(self.process)


def _stop(process: subprocess.Popen[str]) -> None:
    """End the process group this test started (the script and what it ran)."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _start_terminal(block: str, cwd: Path, env: dict[str, str], log: Path) -> subprocess.Popen[str]:
    with log.open("w") as out:
        return subprocess.Popen(
            ["bash", "-c", block],
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )


def _wait_until_ok(url: str, process: subprocess.Popen[str], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        assert process.poll() is None, f"exited early:\n{log.read_text()}"
        try:
            if web.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)  # polling interval while the process starts, not a synchronisation
    raise AssertionError(f"{url} never answered:\n{log.read_text()}")


@pytest.fixture
def checkout(tmp_path: Path) -> Iterator[Path]:
    """A folder that looks like a fresh clone with `scripts/setup` already run."""
    # Make sure .venv matches the lock (a no-op when it does), so that `scripts/serve` inside
    # the scratch folder finds it current and never re-installs the shared environment.
    subprocess.run([ROOT / "scripts" / "setup", "--dev"], check=True, timeout=600)
    ensure_node_modules()
    folder = tmp_path / "checkout"
    folder.mkdir()
    for name in LINKED:
        (folder / name).symlink_to(ROOT / name)
    yield folder


def test_the_quick_start_connects_an_account_and_hands_out_a_working_token(
    checkout: Path, tmp_path: Path
) -> None:
    provider_block, service_block, setup_block, token_block = quick_start_blocks()
    assert provider_block.strip() == "scripts/local-oidc"
    assert service_block.strip().endswith("scripts/serve")

    oidc_port, port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONNECTORS_")}
    env |= {
        "OIDC_PORT": str(oidc_port),
        "CONNECTORS_PORT": str(port),
        "CONNECTORS_BASE_URL": f"http://127.0.0.1:{port}",
    }
    provider_log, service_log = tmp_path / "terminal-1.log", tmp_path / "terminal-2.log"
    provider = _start_terminal(provider_block, checkout, env, provider_log)
    service: subprocess.Popen[str] | None = None
    terminal = Terminal(checkout, env)
    try:
        issuer = f"http://127.0.0.1:{oidc_port}"
        _wait_until_ok(f"{issuer}/.well-known/openid-configuration", provider, provider_log)
        service = _start_terminal(service_block, checkout, env, service_log)
        _wait_until_ok(f"http://127.0.0.1:{port}/readyz", service, service_log)

        authorization_url = terminal.run(setup_block).strip().splitlines()[-1]
        assert authorization_url.startswith(f"{issuer}/"), authorization_url

        # The browser: sign in and consent at the provider, then follow it back to the service.
        callback = login_and_consent(authorization_url)
        assert callback.startswith(f"http://127.0.0.1:{port}/v1/personal-connectors/callback?")
        page = web.get(callback, headers={"Accept": "text/html"}, timeout=30)
        assert page.status_code == 200, page.text

        token = json.loads(terminal.run(token_block))
        assert token["token_type"].lower() == "bearer"
        assert token["connection_id"].startswith("conn_")
        metadata = web.get(f"{issuer}/.well-known/openid-configuration").json()
        userinfo = web.get(
            metadata["userinfo_endpoint"],
            headers={"Authorization": f"Bearer {token['access_token']}"},
        )
        assert userinfo.status_code == 200 and userinfo.json()["sub"] == "alice"

        # Then the platform section, in the same terminal: one service key, two end users.
        connect_block, use_block, erase_block = readme_blocks("A platform's backend")
        authorization_url = terminal.run(connect_block).strip().splitlines()[-1]
        callback = login_and_consent(authorization_url)
        page = web.get(callback, headers={"Accept": "text/html"}, timeout=30)
        assert page.status_code == 200, page.text
        access_token, other_end_user = terminal.run(use_block).strip().splitlines()
        as_end_user = {"Authorization": f"Bearer {json.loads(access_token)}"}
        assert web.get(metadata["userinfo_endpoint"], headers=as_end_user).status_code == 200
        assert json.loads(other_end_user) == []
        assert terminal.run(erase_block).strip() == "204"
        assert web.get(metadata["userinfo_endpoint"], headers=as_end_user).status_code == 401
        listed = terminal.run('curl -s "$API?end_user_id=user-42" -H "X-API-Key: $SVC" | jq -c .')
        assert json.loads(listed) == []  # erased

        assert "but the service listens on" not in service_log.read_text()  # settings agree
        assert "Unsupported runtime" not in provider_log.read_text()  # scripts/node's filter
    finally:
        terminal.close()
        if service is not None:
            _stop(service)
        _stop(provider)
