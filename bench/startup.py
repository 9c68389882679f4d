"""Start-up benchmark: seconds from `connectors serve` to a 200 from /readyz on the embedded
SQLite default, on a first start (database and key created) and on later starts.

Run: .venv/bin/python bench/startup.py [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def time_one_start(workdir: str) -> float:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONNECTORS_")}
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "personal_connectors", "serve", "--port", str(port)],
        cwd=workdir,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=0.5).status_code == 200:
                    return time.perf_counter() - started
            except httpx.HTTPError:
                time.sleep(0.01)
            if process.poll() is not None:
                raise SystemExit("the service exited during start-up")
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs
    with tempfile.TemporaryDirectory() as workdir:
        first = time_one_start(workdir)
        later = [time_one_start(workdir) for _ in range(runs)]
    print(f"first start (creates ./data, key, schema): {first:.3f} s")
    median, worst = statistics.median(later), max(later)
    print(f"later starts, {runs} runs: median {median:.3f} s, max {worst:.3f} s")
    print(f"python bytecode writing disabled: {sys.flags.dont_write_bytecode == 1}")


if __name__ == "__main__":
    main()
