"""Token hot-path benchmark: `POST /{id}/token` against a trivial endpoint of the same server.

Seeds N connections through the operator's import path (`connectors connections import`), with
expiries far in the future so no refresh happens, starts one real `connectors serve`, and drives
it with keep-alive HTTP/1.1 clients at a fixed concurrency: first `GET /livez` (the trivial
baseline: routing, middleware, JSON, the HTTP stack), then `POST /{id}/token` on a random one of
the N connections. The ratio of the two throughputs is what the token path itself costs.

The load generator is a minimal keep-alive HTTP/1.1 client on uvloop (`--client httpx` swaps in
async httpx), split over `--clients` processes. It prints its own CPU use next to the server's: a
client near 100% of a core is the bottleneck and the figures are the client's, not the
service's. Measured: one httpx process saturates its core at about 600 req/s against `/livez`,
far below what the server answers, so httpx cannot tell the two endpoints apart; the raw client
drives `/livez` to the server's limit at about 20% of a core. On a 2-core machine the clients
and the server (and PostgreSQL) share the cores. Server CPU per request is printed too: unlike
req/s it barely moves when the machine is busy.

The two endpoints are measured in interleaved rounds (`/livez`, token, then token, `/livez`, …)
and the rounds summed: a run of each alone swung the ratio by ±7 points on this machine, because
the machine's speed drifts between two 10-second windows by about that much.

Run: .venv/bin/python bench/token_path.py [--connections 10000] [--concurrency 32]
     [--rounds 4] [--duration 5] [--warmup 2] [--clients 1] [--client raw|httpx]
     [--db sqlite|postgres|both] [--keys user|service|both] [--rate-limit SPEC]
     [--rate-limit-storage URL]

`--rate-limit 1000000000/minute` runs the same with rate limits on (a limit never reached, so
every request pays the counting and none is refused). `--compare-rate-limit 1000000000/minute`
measures what the limits cost in one run: two servers on the same database, one with the limits
and one without, their token paths in interleaved rounds (SPEC §12's target: within 5%).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import multiprocessing
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import cast

import httpx
from sqlalchemy import Table, bindparam, insert, update

from personal_connectors.config import Settings
from personal_connectors.models import (
    Base,
    Connection,
    EndUser,
    Membership,
    Role,
    User,
    new_id,
)
from personal_connectors.storage.database import open_database

API = "/v1/personal-connectors"
POSTGRES_ADMIN = os.environ.get("PC_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def helper_process(command: list[str], probe: Callable[[], object], what: str) -> Iterator[int]:
    """A helper server (an upstream API, an MCP server) in a process of its own until the block
    ends; yields its pid once ``probe`` returns without a transport error."""
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                probe()
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"{what} did not start") from None
                time.sleep(0.1)
        yield process.pid
    finally:
        process.terminate()
        process.wait(timeout=10)


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def child_pids(pid: int) -> list[int]:
    """A process's children, from /proc (Linux)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    return found


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of a process and its living descendants: a server with ``--workers`` does
    its work in children, whose time reaches the parent's own counts only once they exit."""
    total = 0.0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            total += process_cpu_seconds(current)
            pending += child_pids(current)
        except FileNotFoundError:  # exited meanwhile
            continue
    return total


# --------------------------------------------------------------------------- the service


@dataclass
class Deployment:
    """One database backend with the service's environment and the seeded data."""

    env: dict[str, str]
    workdir: Path
    database_url: str | None = None

    def cli(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "personal_connectors", *args],
            env=self.env,
            cwd=self.workdir,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if done.returncode != 0:
            raise SystemExit(f"connectors {args[0]} {args[1]} failed:\n{done.stderr[-2000:]}")
        return done.stdout

    def settings(self) -> Settings:
        """The service's settings: its ``CONNECTORS_`` variables only (no .env, no environment)."""
        return Settings.model_validate(
            {
                name[len("CONNECTORS_") :].lower(): value
                for name, value in self.env.items()
                if name.startswith("CONNECTORS_")
            }
        )

    def cli_json(self, *args: str) -> object:
        return json.loads(self.cli(*args, "--json"))


@contextmanager
def deployment(db: str, settings: dict[str, str] | None = None) -> Iterator[Deployment]:
    """``settings``: more ``CONNECTORS_`` variables (the rate limit's)."""
    with tempfile.TemporaryDirectory(prefix=f"bench-token-{db}-") as tmp:
        workdir = Path(tmp)
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONNECTORS_")}
        env.update(settings or {})
        env["CONNECTORS_DATA_DIR"] = str(workdir / "data")
        env["CONNECTORS_ENCRYPTION_KEYS"] = base64.b64encode(os.urandom(32)).decode()
        env["CONNECTORS_LOG_LEVEL"] = "INFO"
        env["CONNECTORS_OUTBOUND_ALLOW_INTERNAL"] = "true"  # the benchmark provider is local
        database_url = None
        if db == "postgres":
            name = f"pc_bench_{uuid.uuid4().hex[:12]}"
            psql("postgres", f'CREATE DATABASE "{name}"')
            database_url = f"{POSTGRES_ADMIN}/{name}"
            env["CONNECTORS_DATABASE_URL"] = database_url
        deployed = Deployment(env, workdir, database_url)
        try:
            if database_url:
                deployed.cli("migrate")
            yield deployed
        finally:
            if database_url:
                psql("postgres", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def psql(database: str, sql: str) -> None:
    subprocess.run(
        ["psql", f"{POSTGRES_ADMIN}/{database}", "-v", "ON_ERROR_STOP=1", "-qc", sql],
        check=True,
        capture_output=True,
        timeout=60,
    )


@dataclass(frozen=True)
class Seeded:
    organization_id: str
    api_key: str
    connection_ids: list[str]
    service_key: str = ""
    end_user_ids: tuple[str, ...] = ()  # the end user of each connection, by position


def analyze(deployed: Deployment) -> None:
    """PostgreSQL: fresh planner statistics after seeding, as autovacuum would gather soon
    after a real import; without them a read of freshly bulk-written rows can be planned on the
    wrong index (measured: the service-key lookup scanned 1,300 rows a set, 2.0 ms a batch of
    8, against 0.16 ms on the primary key once analyzed)."""
    if deployed.database_url is not None:
        psql(deployed.database_url.rsplit("/", 1)[1], "ANALYZE")


def table(model: type[Base]) -> Table:
    return cast(Table, model.__table__)


def hand_to_end_users(deployed: Deployment, seeded: Seeded) -> Seeded:
    """Each connection given to an end user of its own (``eu-<n>``), and a service key to act
    for them (SPEC §8): the token path with ``end_user_id``, where the end user is resolved in
    the same single read."""
    key = deployed.cli_json("api-keys", "create", "--org", seeded.organization_id, "--service")
    assert isinstance(key, dict)
    settings = deployed.settings()
    end_user_ids = tuple(f"eu-{number}" for number in range(len(seeded.connection_ids)))

    async def write() -> None:
        async with open_database(settings) as sessions, sessions() as session:
            users, end_users, memberships, owners = [], [], [], []
            for connection_id, external_id in zip(seeded.connection_ids, end_user_ids, strict=True):
                user_id = new_id("user")
                users.append({"id": user_id, "email": None, "name": None})
                end_users.append(
                    {
                        "id": new_id("eu"),
                        "organization_id": seeded.organization_id,
                        "external_id": external_id,
                        "user_id": user_id,
                        "tags": {},
                    }
                )
                memberships.append(
                    {
                        "id": new_id("mem"),
                        "organization_id": seeded.organization_id,
                        "user_id": user_id,
                        "role": Role.END_USER.value,
                    }
                )
                owners.append({"connection_id": connection_id, "owner": user_id})
            await session.execute(insert(table(User)), users)
            await session.execute(insert(table(EndUser)), end_users)
            await session.execute(insert(table(Membership)), memberships)
            connections = table(Connection)
            await session.execute(
                update(connections)
                .where(connections.c.id == bindparam("connection_id"))
                .values(user_id=bindparam("owner")),
                owners,
            )
            await session.commit()

    asyncio.run(write())
    analyze(deployed)
    return replace(seeded, service_key=str(key["key"]), end_user_ids=end_user_ids)


def seed(deployed: Deployment, count: int) -> tuple[Seeded, float]:
    """An owner with an API key and ``count`` GitHub connections, through the import command."""
    org = deployed.cli_json("orgs", "create", "Bench")
    assert isinstance(org, dict)
    user = deployed.cli_json("users", "create", "bench@example.test", "--org", org["id"])
    assert isinstance(user, dict)
    subprocess_args = ("api-keys", "create", "--user", user["id"])
    key = deployed.cli_json(*subprocess_args)
    assert isinstance(key, dict)
    lines = deployed.workdir / "connections.jsonl"
    with lines.open("w") as handle:
        for number in range(count):
            record = {
                "user_id": user["id"],
                "app_key": "github",
                "account_id": str(1_000_000 + number),
                "account_email": f"account{number}@example.test",
                "access_token": f"gho_bench_{uuid.uuid4().hex}",
                "refresh_token": f"ghr_bench_{uuid.uuid4().hex}",
                "expires_at": "2099-01-01T00:00:00+00:00",
                "scopes": ["repo", "read:user"],
            }
            handle.write(json.dumps(record) + "\n")
    started = time.perf_counter()
    report = deployed.cli_json("connections", "import", str(lines), "--org", org["id"])
    import_seconds = time.perf_counter() - started
    assert isinstance(report, dict) and report["imported"] == count, report
    listed = deployed.cli_json("connections", "list", "--org", org["id"])
    assert isinstance(listed, list) and len(listed) == count
    return Seeded(org["id"], key["key"], [row["id"] for row in listed]), import_seconds


@contextmanager
def served(
    deployed: Deployment, settings: dict[str, str] | None = None, workers: int = 1
) -> Iterator[tuple[str, int]]:
    """`connectors serve` (its defaults, ``workers`` worker processes) until the block ends;
    yields (url, pid). ``settings``: more ``CONNECTORS_`` variables for this server alone."""
    port = free_port()
    log = (deployed.workdir / "service.log").open("ab")
    command = [sys.executable, "-m", "personal_connectors", "serve", "--port", str(port)]
    if workers > 1:
        command += ["--workers", str(workers)]
    process = subprocess.Popen(
        command,
        env={**deployed.env, **(settings or {})},
        cwd=deployed.workdir,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise SystemExit("the service exited during start-up; see its log")
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("the service did not become ready")
            time.sleep(0.05)
        yield url, process.pid
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


# --------------------------------------------------------------------------- the load


@dataclass(frozen=True)
class Target:
    """What every request of a run is: a method, and a path chosen per request."""

    name: str
    method: str
    paths: list[str]
    params: dict[str, str]
    headers: dict[str, str]


@dataclass(frozen=True)
class ClientJob:
    base_url: str
    target: Target
    concurrency: int
    start_at: float  # wall clock (time.time()): all client processes begin together
    warmup: float
    duration: float
    client: str  # "raw" or "httpx"


@dataclass(frozen=True)
class ClientResult:
    latencies: list[float]  # seconds, of requests that completed inside the measured window
    errors: int
    cpu_seconds: float  # this client process, over the measured window


def run_client(job: ClientJob) -> ClientResult:
    """One load-generator process: ``concurrency`` keep-alive connections looping requests."""
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
        pass
    return asyncio.run(_drive(job))


class RawConnection:
    """A minimal HTTP/1.1 keep-alive client connection: a request out, a response in.

    A few dozen microseconds a request where httpx spends several hundred; with httpx one client
    process saturates a core long before the server does (measured: `--client httpx`).
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, base_url: str) -> RawConnection:
        host, port = base_url.removeprefix("http://").rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.transport.get_extra_info("socket").setsockopt(
            socket.IPPROTO_TCP, socket.TCP_NODELAY, 1
        )
        return cls(reader, writer)

    async def request(self, head: bytes) -> int:
        """Send a prepared request head (no body) and read the whole answer; its status."""
        self.writer.write(head)
        header = await self.reader.readuntil(b"\r\n\r\n")
        status = int(header[9:12])
        length = 0
        for line in header.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
                break
        else:
            raise RuntimeError("the benchmark client needs a Content-Length on every answer")
        await self.reader.readexactly(length)
        return status

    def close(self) -> None:
        self.writer.close()


def request_heads(base_url: str, target: Target) -> list[bytes]:
    """Every distinct request of a target, encoded once up front."""
    host = base_url.removeprefix("http://")
    query = "&".join(f"{k}={v}" for k, v in target.params.items())
    extra = "".join(f"{k}: {v}\r\n" for k, v in target.headers.items())
    return [
        (
            f"{target.method} {path}{('&' if '?' in path else '?') + query if query else ''} "
            "HTTP/1.1\r\n"
            f"Host: {host}\r\n{extra}Content-Length: 0\r\n\r\n"
        ).encode()
        for path in target.paths
    ]


async def send_prepared(connection: RawConnection, heads: list[bytes], index: int) -> int:
    return await connection.request(heads[index])


async def _drive(job: ClientJob) -> ClientResult:
    target = job.target
    latencies: list[float] = []
    errors = 0
    cpu_at_window: list[float] = []
    send: list[Callable[[int], Awaitable[int]]] = []
    heads = request_heads(job.base_url, target)
    closers: list[Callable[[], object]] = []
    if job.client == "raw":
        for _ in range(job.concurrency):
            connection = await RawConnection.open(job.base_url)
            closers.append(connection.close)
            send.append(partial(send_prepared, connection, heads))
    else:
        limits = httpx.Limits(
            max_connections=job.concurrency, max_keepalive_connections=job.concurrency
        )
        client = httpx.AsyncClient(base_url=job.base_url, limits=limits, timeout=30)
        closers.append(client.aclose)

        async def via_httpx(index: int) -> int:
            response = await client.request(
                target.method, target.paths[index], params=target.params, headers=target.headers
            )
            return response.status_code

        send = [via_httpx] * job.concurrency
    await asyncio.sleep(max(0.0, job.start_at - time.time()))
    begin = time.perf_counter()
    window_start = begin + job.warmup
    window_end = window_start + job.duration

    async def worker(request: Callable[[int], Awaitable[int]]) -> None:
        nonlocal errors
        pick = random.Random().randrange  # load spreading, not security
        count = len(heads)
        while True:
            sent = time.perf_counter()
            if sent >= window_end:
                return
            status = await request(pick(count))
            done = time.perf_counter()
            if window_start <= sent and done <= window_end:
                if status == 200:
                    latencies.append(done - sent)
                else:
                    errors += 1

    async def cpu_marks() -> None:
        await asyncio.sleep(job.warmup)
        cpu_at_window.append(time.process_time())
        await asyncio.sleep(job.duration)
        cpu_at_window.append(time.process_time())

    await asyncio.gather(cpu_marks(), *(worker(request) for request in send))
    for close in closers:
        closed = close()
        if asyncio.iscoroutine(closed):
            await closed
    return ClientResult(latencies, errors, cpu_at_window[1] - cpu_at_window[0])


@dataclass(frozen=True)
class RunResult:
    name: str
    latencies: list[float]  # sorted, seconds
    errors: int
    duration: float
    client_cpu: float  # fraction of one core, summed over client processes
    server_cpu: float

    @property
    def requests(self) -> int:
        return len(self.latencies)

    @property
    def p50_ms(self) -> float:
        return statistics.median(self.latencies) * 1000

    @property
    def p99_ms(self) -> float:
        return self.latencies[min(len(self.latencies) - 1, int(len(self.latencies) * 0.99))] * 1000

    @classmethod
    def combined(cls, runs: list[RunResult]) -> RunResult:
        """Rounds of one target as one run: requests and time summed, CPU time-weighted."""
        duration = sum(run.duration for run in runs)
        return cls(
            name=runs[0].name,
            latencies=sorted(latency for run in runs for latency in run.latencies),
            errors=sum(run.errors for run in runs),
            duration=duration,
            client_cpu=sum(run.client_cpu * run.duration for run in runs) / duration,
            server_cpu=sum(run.server_cpu * run.duration for run in runs) / duration,
        )

    @property
    def throughput(self) -> float:
        return self.requests / self.duration

    @property
    def server_cpu_per_request_us(self) -> float:
        """Server CPU per answered request: unlike req/s, barely moved by a busy machine."""
        return self.server_cpu * self.duration / self.requests * 1e6


def measure(
    base_url: str,
    server_pid: int,
    target: Target,
    args: argparse.Namespace,
    *,
    start_delay: float = 1.0,
) -> RunResult:
    """``start_delay``: seconds for the client processes to start (and to receive the target:
    a million paths take a few seconds to pass and encode)."""
    spread = [
        args.concurrency // args.clients + (i < args.concurrency % args.clients)
        for i in range(args.clients)
    ]
    start_at = time.time() + start_delay
    jobs = [
        ClientJob(base_url, target, share, start_at, args.warmup, args.duration, args.client)
        for share in spread
        if share
    ]
    context = multiprocessing.get_context("spawn")
    with context.Pool(len(jobs)) as pool:
        pending = pool.map_async(run_client, jobs)
        time.sleep(max(0.0, start_at + args.warmup - time.time()))
        server_before = tree_cpu_seconds(server_pid)
        time.sleep(args.duration)
        server_after = tree_cpu_seconds(server_pid)
        results: list[ClientResult] = pending.get(timeout=args.warmup + args.duration + 120)
    latencies = sorted(latency for result in results for latency in result.latencies)
    if not latencies:
        raise SystemExit(f"{target.name}: no request completed in the measured window")
    return RunResult(
        name=target.name,
        latencies=latencies,
        errors=sum(result.errors for result in results),
        duration=args.duration,
        client_cpu=sum(result.cpu_seconds for result in results) / args.duration,
        server_cpu=(server_after - server_before) / args.duration,
    )


def check_token_answer(base_url: str, seeded: Seeded, *, limited: bool = False) -> None:
    """One real call first: a benchmark of 404s or 401s would measure nothing useful."""
    params = {"organization_id": seeded.organization_id}
    key = seeded.api_key
    if seeded.service_key:
        params["end_user_id"] = seeded.end_user_ids[0]
        key = seeded.service_key
    response = httpx.post(
        f"{base_url}{API}/{seeded.connection_ids[0]}/token",
        params=params,
        headers={"X-API-Key": key},
    )
    response.raise_for_status()
    assert response.json()["access_token"].startswith("gho_bench_")
    if limited:  # the limit is really on: a benchmark with it off would compare nothing
        assert "x-ratelimit-remaining-requests" in response.headers, response.headers


def rate_limit_settings(args: argparse.Namespace) -> dict[str, str]:
    """``--rate-limit``, ``--rate-limit-storage`` as the service's variables (with
    ``--compare-rate-limit``: none; its limited server is given them itself)."""
    settings: dict[str, str] = {}
    if args.compare_rate_limit:
        return settings
    if args.rate_limit:
        settings["CONNECTORS_RATE_LIMIT"] = args.rate_limit
        settings["CONNECTORS_RATE_LIMIT_SERVICE"] = args.rate_limit
    if args.rate_limit_storage:
        settings["CONNECTORS_RATE_LIMIT_STORAGE"] = args.rate_limit_storage
    return settings


# --------------------------------------------------------------------------- the report


def print_run(result: RunResult) -> None:
    print(
        f"  {result.name:<22} {result.throughput:9.0f} req/s   p50 {result.p50_ms:6.2f} ms   "
        f"p99 {result.p99_ms:6.2f} ms   errors {result.errors}   "
        f"CPU: server {result.server_cpu:4.0%} ({result.server_cpu_per_request_us:4.0f} us/req), "
        f"clients {result.client_cpu:4.0%}"
    )


Side = tuple[str, int, Target]  # a server's URL, its pid, what to ask it


def interleaved(base: Side, hot: Side, args: argparse.Namespace) -> tuple[RunResult, RunResult]:
    """Interleaved rounds: the machine drifts (other load, CPU frequency, the page cache) by
    more than the difference measured, so each side gets a share of every stretch of the run
    instead of one stretch each. The order alternates (base first, then hot first, …): what a
    token round leaves running (the audit's writes, a checkpoint) slows whichever comes after
    it, not always the base."""
    rounds: list[tuple[RunResult, RunResult]] = []
    for number in range(1, args.rounds + 1):
        if number % 2:
            base_result = measure(*base, args)
            hot_result = measure(*hot, args)
        else:
            hot_result = measure(*hot, args)
            base_result = measure(*base, args)
        rounds.append((base_result, hot_result))
        print(
            f"  round {number}: {base_result.throughput:6.0f} vs {hot_result.throughput:6.0f} "
            f"req/s = {hot_result.throughput / base_result.throughput:4.0%}"
        )
    return (
        RunResult.combined([base for base, _ in rounds]),
        RunResult.combined([hot for _, hot in rounds]),
    )


# The token path's share of the trivial endpoint's throughput, per database (issue targets).
TARGET_RATIO = {"sqlite": 0.60, "postgres": 0.80}


def report(db: str, base: RunResult, hot: RunResult) -> None:
    for result in (base, hot):
        print_run(result)
    ratio = hot.throughput / base.throughput
    least = TARGET_RATIO[db]
    meets = ratio >= least and hot.p99_ms < 25 and hot.errors == 0 and base.errors == 0
    verdict = "meets" if meets else "MISSES"
    target = f"token >= {least:.0%} of trivial throughput, token p99 < 25 ms, no errors"
    print(f"  token/trivial throughput: {ratio:.0%}  ({verdict} the target: {target})")


# With rate limits on, the token path keeps at least this share of its throughput without them.
RATE_LIMIT_TARGET = 0.95


def compare_rate_limits(
    deployed: Deployment, seeded: Seeded, token: Target, args: argparse.Namespace
) -> None:
    """The same token requests to two servers on one database, without and with the limits."""
    limited = {
        "CONNECTORS_RATE_LIMIT": args.compare_rate_limit,
        "CONNECTORS_RATE_LIMIT_SERVICE": args.compare_rate_limit,
    }
    if args.rate_limit_storage:
        limited["CONNECTORS_RATE_LIMIT_STORAGE"] = args.rate_limit_storage
    with served(deployed) as (off_url, off_pid), served(deployed, limited) as (on_url, on_pid):
        check_token_answer(off_url, seeded, limited=False)
        check_token_answer(on_url, seeded, limited=True)
        print(f"  {token.name}: limits off vs on ({args.compare_rate_limit}), same database")
        off, on = interleaved((off_url, off_pid, token), (on_url, on_pid, token), args)
    for result in (off, on):
        print_run(result)
    ratio = on.throughput / off.throughput
    added = on.server_cpu_per_request_us - off.server_cpu_per_request_us
    verdict = "meets" if ratio >= RATE_LIMIT_TARGET and on.errors == 0 else "MISSES"
    print(
        f"  limits on / off: {ratio:.1%} of the throughput, {added:+.0f} us server CPU a "
        f"request, p50 {on.p50_ms - off.p50_ms:+.2f} ms  ({verdict} the target: "
        f">= {RATE_LIMIT_TARGET:.0%})"
    )


def bench_backend(db: str, args: argparse.Namespace) -> None:
    print(f"\n[{db}] seeding {args.connections} connections with `connectors connections import`")
    with deployment(db, rate_limit_settings(args)) as deployed:
        seeded, import_seconds = seed(deployed, args.connections)
        print(f"  import: {import_seconds:.1f} s")
        analyze(deployed)
        if args.keys in ("user", "both"):
            token = Target(
                "POST /{id}/token",
                "POST",
                [f"{API}/{connection_id}/token" for connection_id in seeded.connection_ids],
                {"organization_id": seeded.organization_id},
                {"X-API-Key": seeded.api_key},
            )
            bench_token(db, deployed, seeded, token, args)
        if args.keys in ("service", "both"):
            seeded = hand_to_end_users(deployed, seeded)
            print(f"  [{db}, service key] each connection an end user's, end_user_id per request")
            token = Target(
                "POST /{id}/token (svc)",
                "POST",
                [
                    f"{API}/{connection_id}/token?end_user_id={end_user_id}"
                    for connection_id, end_user_id in zip(
                        seeded.connection_ids, seeded.end_user_ids, strict=True
                    )
                ],
                {"organization_id": seeded.organization_id},
                {"X-API-Key": seeded.service_key},
            )
            bench_token(db, deployed, seeded, token, args)


def bench_token(
    db: str, deployed: Deployment, seeded: Seeded, token: Target, args: argparse.Namespace
) -> None:
    """The token path against /livez on one server, or with ``--compare-rate-limit`` against
    itself on a second server that counts rate limits."""
    if args.compare_rate_limit:
        compare_rate_limits(deployed, seeded, token, args)
        return
    trivial = Target("GET /livez", "GET", ["/livez"], {}, {})
    with served(deployed) as (base_url, pid):
        check_token_answer(base_url, seeded, limited=bool(args.rate_limit))
        report(db, *interleaved((base_url, pid, trivial), (base_url, pid, token), args))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--duration", type=float, default=5.0, help="measured seconds per run")
    parser.add_argument(
        "--rounds", type=int, default=4, help="interleaved runs of each endpoint, summed"
    )
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds first")
    parser.add_argument("--clients", type=int, default=1, help="load-generator processes")
    parser.add_argument(
        "--client",
        choices=("raw", "httpx"),
        default="raw",
        help="the load generator's HTTP client (httpx is the client-bound comparison)",
    )
    parser.add_argument("--db", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument(
        "--rate-limit",
        metavar="SPEC",
        help="run the server with CONNECTORS_RATE_LIMIT (and _SERVICE) set to SPEC, e.g. "
        "1000000000/minute (high enough never to refuse: the limits' cost alone); compare "
        "with a run without it",
    )
    parser.add_argument(
        "--compare-rate-limit",
        metavar="SPEC",
        help="measure the token path on two servers of one database, without and with "
        "CONNECTORS_RATE_LIMIT (and _SERVICE) set to SPEC, in interleaved rounds",
    )
    parser.add_argument(
        "--rate-limit-storage",
        metavar="URL",
        help="CONNECTORS_RATE_LIMIT_STORAGE, e.g. redis://127.0.0.1:6379/0 (default: memory)",
    )
    parser.add_argument(
        "--keys",
        choices=("user", "service", "both"),
        default="both",
        help="a user key, a service key with end_user_id (SPEC §8), or one after the other",
    )
    args = parser.parse_args()
    if args.compare_rate_limit and args.rate_limit:
        parser.error("--compare-rate-limit runs its own limited server; leave out --rate-limit")
    if args.clients < 1 or args.concurrency < args.clients:
        parser.error("need 1 <= --clients <= --concurrency")
    print(
        f"token path benchmark: {args.connections} connections, concurrency {args.concurrency} "
        f"over {args.clients} client process(es), {args.rounds} interleaved rounds of "
        f"{args.warmup:g} s warm-up + {args.duration:g} s measured per endpoint; "
        f"{os.cpu_count()} CPUs, "
        f"rate limit {args.rate_limit or 'off'}"
        f"{' in ' + args.rate_limit_storage if args.rate_limit_storage else ''}, "
        f"load average {os.getloadavg()[0]:.2f} at start"
    )
    for db in ("sqlite", "postgres") if args.db == "both" else (args.db,):
        bench_backend(db, args)
    print(f"\nload average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
