"""Start-up benchmark: `connectors --help`, and `connectors serve` until /readyz answers 200.

Both are timed next to a baseline measured in the same run, round by round (the order
alternates each round, as the machine is shared and noisy): `python -c pass` (the
interpreter alone) and, with `--compare REF`, the same commands on the code of a git
revision (extracted to a temporary folder, bytecode compiled, run with this virtualenv).
The serve figures are later starts on the embedded SQLite default; the first start, which
creates the database, key and schema, is printed apart. Each figure is wall-clock time and the
CPU time the process used until then (user + system): on a loaded machine the wall clock
mostly measures the wait for a core, and the CPU time is what an idle machine would take.

Run: .venv/bin/python bench/startup.py [--runs 7] [--compare REF]
"""

from __future__ import annotations

import argparse
import compileall
import os
import signal
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from io import BytesIO
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
HELP_TARGET_S = 0.5
READY_TARGET_S = 1.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env(code: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONNECTORS_")}
    if code is not None:  # the revision's package shadows the installed one
        env["PYTHONPATH"] = str(code)
    return env


Timing = tuple[float, float]  # (wall-clock seconds, CPU seconds)


def time_run(command: list[str], **options: Any) -> Timing:
    """Run a command to its end: its wall-clock and CPU time."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, **options)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{command} failed")
    return time.perf_counter() - started, usage.ru_utime + usage.ru_stime


def cpu_seconds(pid: int) -> float:
    """User + system time a running process used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def time_pass() -> Timing:
    return time_run([sys.executable, "-c", "pass"])


def time_help(workdir: Path, code: Path | None) -> Timing:
    return time_run(
        [sys.executable, "-m", "personal_connectors", "--help"],
        cwd=workdir,  # not the checkout: `-m` puts the working folder first on sys.path
        env=clean_env(code),
    )


def time_ready(workdir: Path, code: Path | None) -> Timing:
    port = free_port()
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "personal_connectors", "serve", "--port", str(port)],
        cwd=workdir,
        env=clean_env(code),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=0.5).status_code == 200:
                    return time.perf_counter() - started, cpu_seconds(process.pid)
            except httpx.HTTPError:
                time.sleep(0.01)
            if process.poll() is not None:
                raise SystemExit("the service exited during start-up")
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)


def extract_revision(revision: str, into: Path) -> Path:
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", revision, "personal_connectors"],
        check=True,
        capture_output=True,
    ).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    compileall.compile_dir(into / "personal_connectors", quiet=1)
    return into


def report(name: str, figures: list[Timing], target: float | None = None) -> None:
    wall = statistics.median(wall for wall, _ in figures)
    cpu = statistics.median(cpu for _, cpu in figures)
    verdict = (
        ""
        if target is None
        else f"  target < {target:.1f} s: wall {wall < target}, CPU {cpu < target}"
    )
    print(
        f"  {name:<34} median wall {wall:.3f} s (min {min(w for w, _ in figures):.3f}), "
        f"CPU {cpu:.3f} s{verdict}"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--compare", metavar="REF", help="also time this git revision's code")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        codes: dict[str, Path | None] = {"this tree": None}
        if args.compare:
            (root / "old").mkdir()
            codes[args.compare] = extract_revision(args.compare, root / "old")
        workdirs = {name: root / f"run-{index}" for index, name in enumerate(codes)}
        first: dict[str, Timing] = {}
        for name, code in codes.items():
            workdirs[name].mkdir()
            first[name] = time_ready(workdirs[name], code)

        jobs: list[tuple[str, Callable[[], Timing]]] = [("python -c pass", time_pass)]
        for name, code in codes.items():
            jobs.append(
                (f"connectors --help [{name}]", lambda n=name, c=code: time_help(workdirs[n], c))
            )
            jobs.append(
                (f"serve → /readyz [{name}]", lambda n=name, c=code: time_ready(workdirs[n], c))
            )
        figures: dict[str, list[Timing]] = {label: [] for label, _ in jobs}
        for round_ in range(args.runs):
            for label, job in jobs if round_ % 2 == 0 else reversed(jobs):
                figures[label].append(job())

    print(f"{args.runs} rounds, order alternating; load average {os.getloadavg()[0]:.1f}")
    for label, values in figures.items():
        target = HELP_TARGET_S if "--help" in label else READY_TARGET_S
        report(label, values, target if "[this tree]" in label else None)
    for name, (wall, cpu) in first.items():
        print(
            f"  first start (creates data/, key, schema) [{name}]: wall {wall:.3f} s, "
            f"CPU {cpu:.3f} s"
        )
    print(f"python bytecode writing disabled: {sys.flags.dont_write_bytecode == 1}")


if __name__ == "__main__":
    main()
