"""A million connections (issue 15, SPEC §12): the token path, the refresher's queries, worker
memory and the audit table's retention at 1,000,000 connections on PostgreSQL.

Two PostgreSQL databases of the same schema are seeded in the same run, a small one (10,000
connections) and a large one (1,000,000), each with an organization, a GitHub OAuth app, a service
key, and per connection its end user (a user, an end user, a membership: SPEC §8), all written
with COPY (asyncpg). Every token is sealed on its own: the associated data binds a sealed token to
its row and field (``tokens.vault``), so one sealed blob cannot be reused across rows.

The rows look like a steady state with a running refresher: 90% GitHub-App tokens (8 h life,
refreshed at their half-life, so issued within the last 4 h) and 10% OAuth-app tokens (never
expire, no refresh token); plus a backlog of 0.1% due by expiry (inside the refresher's window)
and 0.1% idle (a refresh token unused for more than a day). The token load leaves the backlog out:
a hand-out of a token that close to expiry would refresh it at GitHub.

Phases, each timed:

1. seed: both databases, COPY, rows/s printed; then ANALYZE;
2. token path: one `connectors serve --workers W` per database (same settings), the token load
   generator of `bench/token_path.py` (``measure``) in interleaved rounds (small, large, then
   large, small, …) so that both sizes share every stretch of the machine's drift; the goal is
   the large throughput within 20% of the small;
3. memory: VmRSS (and VmHWM, the peak) of each server's worker processes after the load;
4. the refresher's claim queries (expiring, idle) and its due-work count (queue depth and lag:
   ``RefresherRepository.backlog``), as the background refresher issues them, each in a
   transaction rolled back: EXPLAIN (ANALYZE, BUFFERS) at the large size, p50/p99 over
   ``--query-runs`` runs at both; a sequential scan of ``connections`` is flagged;
5. audit retention: an hour of token hand-outs at the measured large-size rate is added to the
   large database's audit table (timestamps spread over the last hour), with the hour that left
   the retention period at the same rate (timestamps 7 days and up to an hour back: the steady
   state, one hour in, one hour out); then the retention pruning the refresher and
   `connectors events prune` run (``events.retention.prune_events``), timed; row counts and
   ``pg_total_relation_size`` before, after, and after a plain VACUUM.

Run: .venv/bin/python bench/scale.py [--connections 1000000] [--small 10000] [--seconds 5]
     [--rounds 4] [--workers 2] [--query-runs 100] [--audit-seconds 3600] [--keep FILE]
     [--skip-seed FILE] [--skip-load] [--skip-audit]

``--keep FILE`` leaves the databases and writes what reusing them needs to FILE;
``--skip-seed FILE`` reuses them (and drops them at the end unless ``--keep`` names a file).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import secrets
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy import event

# The deployment helpers and the load generator are the token path benchmark's; this script runs
# from bench/ as that one does.
from token_path import (
    API,
    POSTGRES_ADMIN,
    Deployment,
    RunResult,
    Seeded,
    Target,
    check_token_answer,
    child_pids,
    measure,
    print_run,
    psql,
    served,
)

from personal_connectors.config import Settings
from personal_connectors.crypto.aead import Sealer, associated_data
from personal_connectors.crypto.keyring import load_keyring
from personal_connectors.events.retention import prune_events
from personal_connectors.events.types import EventType
from personal_connectors.models import Role
from personal_connectors.refresher.repository import IDLE_SINCE, RefresherRepository
from personal_connectors.refresher.service import BackgroundRefresher
from personal_connectors.runtime import Runtime
from personal_connectors.storage.database import open_database
from personal_connectors.tokens.vault import TABLE as TOKENS_TABLE

CHUNK = 50_000  # rows a COPY
TOKEN_LIFETIME = timedelta(hours=8)  # GitHub-App user tokens
BACKLOG_SHARE = 0.001  # of the connections, due by expiry; as many idle
GOAL_RATIO = 0.80  # large throughput against small
GOAL_RSS_MB = 150.0


@contextmanager
def phase(name: str) -> Iterator[None]:
    """Prints a phase's name, then its duration."""
    print(f"\n== {name} (load average {os.getloadavg()[0]:.2f})", flush=True)
    started = time.perf_counter()
    yield
    print(f"-- {name}: {time.perf_counter() - started:.1f} s", flush=True)


# --------------------------------------------------------------------------- the databases


@dataclass
class Dataset:
    """One seeded database: what the load and the queries need (JSON-able, for ``--keep``)."""

    label: str
    count: int
    database_url: str
    workdir: str
    encryption_keys: str
    organization_id: str = ""
    service_key: str = ""
    backlog: int = 0  # the first `backlog` rows are due by expiry, the next `backlog` idle

    def deployment(self) -> Deployment:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONNECTORS_")}
        env["CONNECTORS_DATA_DIR"] = str(Path(self.workdir) / "data")
        env["CONNECTORS_ENCRYPTION_KEYS"] = self.encryption_keys
        env["CONNECTORS_LOG_LEVEL"] = "WARNING"
        env["CONNECTORS_DATABASE_URL"] = self.database_url
        return Deployment(env, Path(self.workdir), self.database_url)

    @property
    def asyncpg_url(self) -> str:
        return self.database_url.replace("postgresql+asyncpg://", "postgresql://")

    @property
    def database_name(self) -> str:
        return self.database_url.rsplit("/", 1)[1]


def new_dataset(label: str, count: int) -> Dataset:
    name = f"pc_scale_{label}_{uuid.uuid4().hex[:10]}"
    psql("postgres", f'CREATE DATABASE "{name}"')
    workdir = tempfile.mkdtemp(prefix=f"bench-scale-{label}-")
    keys = base64.b64encode(os.urandom(32)).decode()
    dataset = Dataset(label, count, f"{POSTGRES_ADMIN}/{name}", workdir, keys)
    dataset.deployment().cli("migrate")
    return dataset


def drop(dataset: Dataset) -> None:
    psql("postgres", f'DROP DATABASE IF EXISTS "{dataset.database_name}" WITH (FORCE)')
    shutil.rmtree(dataset.workdir, ignore_errors=True)


def ids(prefix: str, count: int) -> list[str]:
    """``count`` ids of the models' ``new_id`` format, made in one go."""
    digits = secrets.token_hex(16 * count)
    return [f"{prefix}_{digits[i : i + 32]}" for i in range(0, 32 * count, 32)]


@dataclass
class SeedTimes:
    rows: int = 0
    sealing: float = 0.0  # seconds spent sealing tokens
    generating: float = 0.0  # building the other values
    copying: float = 0.0  # COPY, the database's side included
    setup: float = 0.0  # the organization, app and key, by the CLI

    @property
    def bulk(self) -> float:
        return self.sealing + self.generating + self.copying


async def seed(dataset: Dataset) -> SeedTimes:
    """The connections of a dataset and their owners, with COPY; the org, app and key first."""
    started = time.perf_counter()
    deployed = dataset.deployment()
    org = deployed.cli_json("orgs", "create", f"Scale {dataset.label}")
    assert isinstance(org, dict)
    deployed.cli(
        "apps", "set", "github", "--client-id", "bench-client", "--client-secret",
        "bench-secret-0123456789", "--org", org["id"],
    )  # fmt: skip
    key = deployed.cli_json("api-keys", "create", "--org", org["id"], "--service")
    assert isinstance(key, dict)
    dataset.organization_id, dataset.service_key = org["id"], str(key["key"])
    dataset.backlog = max(1, int(dataset.count * BACKLOG_SHARE))
    sealer = Sealer(load_keyring(deployed.settings()))
    times = SeedTimes(setup=time.perf_counter() - started)
    connection = await asyncpg.connect(dataset.asyncpg_url)
    try:
        # The rows are consistent as made, so the foreign keys' per-row checks are skipped
        # (triggers off for this session, as pg_restore --disable-triggers does).
        await connection.execute("SET session_replication_role = replica")
        app_id = await connection.fetchval(
            "SELECT id FROM oauth_apps WHERE organization_id = $1 AND app_key = 'github'", org["id"]
        )
        for start in range(0, dataset.count, CHUNK):
            await seed_chunk(
                connection,
                dataset,
                sealer,
                app_id,
                start,
                min(CHUNK, dataset.count - start),
                times,
            )
    finally:
        await connection.close()
    return times


async def seed_chunk(
    connection: asyncpg.Connection,
    dataset: Dataset,
    sealer: Sealer,
    app_id: str,
    start: int,
    count: int,
    times: SeedTimes,
) -> None:
    began = time.perf_counter()
    org = dataset.organization_id
    now = datetime.now(UTC)
    rng = random.Random(start)  # spreading times, not security
    user_ids, end_user_ids = ids("user", count), ids("eu", count)
    membership_ids, connection_ids = ids("mem", count), ids("conn", count)
    users, end_users, memberships, connections = [], [], [], []
    sealing = 0.0
    for offset in range(count):
        number = start + offset
        user_id, connection_id = user_ids[offset], connection_ids[offset]
        created = now - timedelta(seconds=rng.uniform(86_400, 365 * 86_400))
        users.append((user_id, None, None, created, created))
        end_users.append(
            (end_user_ids[offset], org, f"eu-{number}", user_id, None, None, "{}", created, created)
        )
        memberships.append((membership_ids[offset], org, user_id, Role.END_USER.value, created))
        refresh: str | None = f"ghr_bench_{secrets.token_hex(16)}"
        if number < dataset.backlog:  # due by expiry: inside the refresher's window
            expires: datetime | None = now + timedelta(seconds=rng.uniform(0, 300))
            issued: datetime | None = expires - TOKEN_LIFETIME  # type: ignore[operator]
            refreshed: datetime | None = issued
        elif number < 2 * dataset.backlog:  # idle: a refresh token unused for over a day
            expires = issued = None
            refreshed = now - timedelta(seconds=rng.uniform(25 * 3600, 48 * 3600))
        elif number % 10 == 0:  # a GitHub OAuth-app token: never expires, nothing to refresh
            expires = issued = refreshed = None
            refresh = None
        else:  # refreshed at its last half-life
            issued = now - timedelta(seconds=rng.uniform(0, 3.9 * 3600))
            expires, refreshed = issued + TOKEN_LIFETIME, issued
        due = None if issued is None or expires is None else issued + TOKEN_LIFETIME / 2
        sealed_at = time.perf_counter()
        access_ct = sealer.seal(
            f"gho_bench_{secrets.token_hex(16)}",
            associated_data(TOKENS_TABLE, connection_id, "access_token"),
        )
        refresh_ct = (
            None
            if refresh is None
            else sealer.seal(refresh, associated_data(TOKENS_TABLE, connection_id, "refresh_token"))
        )
        sealing += time.perf_counter() - sealed_at
        connections.append(
            (
                connection_id,
                org,
                user_id,
                "github",
                app_id,
                str(10_000_000 + number),
                f"account{number}@example.test",
                "active",
                True,
                '["repo", "read:user"]',
                "{}",
                "Bearer",
                sealer.key_id,
                access_ct,
                refresh_ct,
                expires,
                1,
                True,
                created,
                refreshed or created,
                0,
                refreshed,
                issued,
                due,
                "oauth2",
            )
        )
    generated = time.perf_counter()
    await connection.copy_records_to_table(
        "users", records=users, columns=("id", "email", "name", "created_at", "updated_at")
    )
    await connection.copy_records_to_table(
        "end_users",
        records=end_users,
        columns=(
            "id",
            "organization_id",
            "external_id",
            "user_id",
            "email",
            "display_name",
            "tags",
            "created_at",
            "updated_at",
        ),
    )
    await connection.copy_records_to_table(
        "memberships",
        records=memberships,
        columns=("id", "organization_id", "user_id", "role", "created_at"),
    )
    await connection.copy_records_to_table(
        "connections",
        records=connections,
        columns=(
            "id",
            "organization_id",
            "user_id",
            "app_key",
            "oauth_app_id",
            "account_id",
            "account_email",
            "status",
            "is_active",
            "scopes",
            "integration_params",
            "token_type",
            "key_id",
            "access_token_ct",
            "refresh_token_ct",
            "expires_at",
            "version",
            "tools_enabled",
            "created_at",
            "updated_at",
            "refresh_failures",
            "last_refreshed_at",
            "token_issued_at",
            "refresh_due_at",
            "auth_mode",
        ),
    )
    times.copying += time.perf_counter() - generated
    times.sealing += sealing
    times.generating += generated - began - sealing
    times.rows += 4 * count


# --------------------------------------------------------------------------- the token path


def token_target(dataset: Dataset, connection_ids: Sequence[str]) -> Target:
    """Hand-outs by the service key for each connection's end user, the backlog left out."""
    return Target(
        f"token @ {dataset.count:,}",
        "POST",
        [
            f"{API}/{connection_id}/token?end_user_id=eu-{number}"
            for number, connection_id in enumerate(connection_ids)
            if number >= 2 * dataset.backlog
        ],
        {"organization_id": dataset.organization_id},
        {"X-API-Key": dataset.service_key},
    )


async def connection_ids(dataset: Dataset) -> list[str]:
    """The connections in seeding order (by end user number)."""
    connection = await asyncpg.connect(dataset.asyncpg_url)
    try:
        rows = await connection.fetch(
            "SELECT c.id, e.external_id FROM connections c"
            " JOIN end_users e ON e.user_id = c.user_id"
        )
    finally:
        await connection.close()
    ordered = [""] * len(rows)
    for row in rows:
        ordered[int(row["external_id"].removeprefix("eu-"))] = row["id"]
    return ordered


def worker_memory(server_pid: int) -> list[tuple[int, float, float]]:
    """(pid, VmRSS MB, VmHWM MB) of each worker process of a server (the server itself when it
    runs one worker in-process)."""
    workers = [
        pid
        for pid in child_pids(server_pid)
        if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
    ] or [server_pid]
    found = []
    for pid in workers:
        status = dict(
            line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        )
        found.append(
            (pid, int(status["VmRSS"].split()[0]) / 1024, int(status["VmHWM"].split()[0]) / 1024)
        )
    return found


def token_load(small: Dataset, large: Dataset, args: argparse.Namespace) -> float:
    """Interleaved rounds at both sizes; returns the large size's hand-out rate."""
    targets = {}
    for dataset in (small, large):
        started = time.perf_counter()
        targets[dataset.label] = token_target(dataset, asyncio.run(connection_ids(dataset)))
        print(
            f"  {dataset.label}: {len(targets[dataset.label].paths):,} connections targeted "
            f"(read in {time.perf_counter() - started:.1f} s)"
        )
    with ExitStack() as stack:
        servers = {}
        for dataset in (small, large):
            deployed = dataset.deployment()
            url, pid = stack.enter_context(served(deployed, workers=args.workers))
            first = targets[dataset.label].paths[0].split("/")[-2]
            check_token_answer(
                url,
                Seeded(
                    dataset.organization_id,
                    "",
                    [first],
                    dataset.service_key,
                    (f"eu-{2 * dataset.backlog}",),
                ),
            )
            servers[dataset.label] = (url, pid)
        runs: dict[str, list[RunResult]] = {"small": [], "large": []}
        for number in range(1, args.rounds + 1):
            order = ("small", "large") if number % 2 else ("large", "small")
            for label in order:
                url, pid = servers[label]
                target = targets[label]
                delay = 1.0 + len(target.paths) / 250_000  # passing and encoding the paths
                runs[label].append(measure(url, pid, target, args, start_delay=delay))
            s, lg = runs["small"][-1], runs["large"][-1]
            print(
                f"  round {number}: {s.throughput:6.0f} req/s at {small.count:,}, "
                f"{lg.throughput:6.0f} at {large.count:,} = {lg.throughput / s.throughput:4.0%}",
                flush=True,
            )
        combined = {label: RunResult.combined(results) for label, results in runs.items()}
        for label in ("small", "large"):
            print_run(combined[label])
        ratio = combined["large"].throughput / combined["small"].throughput
        verdict = "meets" if ratio >= GOAL_RATIO else "MISSES"
        print(
            f"  throughput at {large.count:,} / at {small.count:,}: {ratio:.0%} "
            f"(p50 {combined['large'].p50_ms:.2f} vs {combined['small'].p50_ms:.2f} ms, "
            f"p99 {combined['large'].p99_ms:.2f} vs {combined['small'].p99_ms:.2f} ms; "
            f"{verdict} the goal: within {1 - GOAL_RATIO:.0%})"
        )
        print(f"\n  memory after the load (--workers {args.workers}; goal < {GOAL_RSS_MB:.0f} MB)")
        for dataset in (small, large):
            for pid, rss, peak in worker_memory(servers[dataset.label][1]):
                verdict = "meets" if rss < GOAL_RSS_MB else "MISSES"
                print(
                    f"  {dataset.count:>9,}: worker {pid}: VmRSS {rss:6.1f} MB, "
                    f"peak (VmHWM) {peak:6.1f} MB  ({verdict})"
                )
        return combined["large"].throughput


# --------------------------------------------------------------------------- the refresher


@dataclass
class QueryTimes:
    name: str
    seconds: list[float]

    def percentile(self, share: float) -> float:
        ordered = sorted(self.seconds)
        return ordered[min(len(ordered) - 1, int(len(ordered) * share))] * 1000


async def refresher_queries(dataset: Dataset, runs: int, explain: bool) -> list[QueryTimes]:
    """The background refresher's claim (expiring, then idle) and backlog statements, built by
    its own code (``BackgroundRefresher.policy``, ``RefresherRepository``), each run in a
    transaction rolled back; with ``explain``, each statement's plan first."""
    settings = dataset.deployment().settings()
    runtime = Runtime.start(settings)
    try:
        refresher = BackgroundRefresher(runtime)
        captured: list[tuple[str, Any]] = []

        def capture(*event_args: Any) -> None:
            captured.append((event_args[2], event_args[3]))

        def claim(idle: bool) -> Callable[[RefresherRepository], Awaitable[int]]:
            async def run(repository: RefresherRepository) -> int:
                policy = refresher.policy()
                claimed = await repository.claim(
                    policy.idle() if idle else policy.expiring(),
                    now=policy.now,
                    owner=refresher.owner,
                    lease_seconds=settings.refresh_lease_seconds,
                    limit=refresher.concurrency,
                    order=IDLE_SINCE if idle else None,
                )
                return len(claimed)

            return run

        async def backlog(repository: RefresherRepository) -> int:
            depth, _ = await repository.backlog(refresher.policy().expiring())
            return depth

        queries = {
            "claim, expiring (the refresher's first claim)": claim(idle=False),
            "claim, idle (when slots are left)": claim(idle=True),
            "backlog: due count and soonest (queue depth, lag)": backlog,
        }
        results = []
        for name, query in queries.items():
            if explain:
                captured.clear()
                event.listen(runtime.engine.sync_engine, "before_cursor_execute", capture)
                async with runtime.sessions() as session:
                    found = await query(RefresherRepository(session))
                    await session.rollback()
                event.remove(runtime.engine.sync_engine, "before_cursor_execute", capture)
                print(f"\n  [{name}] {found} rows")
                for statement, parameters in captured:
                    async with runtime.sessions() as session:
                        connection = await session.connection()
                        plan = (
                            await connection.exec_driver_sql(
                                "EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters
                            )
                        ).all()
                        await session.rollback()
                    text = "\n".join(row[0] for row in plan)
                    print("    " + " ".join(statement.split())[:160] + " …")
                    for line in text.splitlines():  # the filters name every provider
                        print("      " + (line if len(line) < 200 else line[:200] + " …"))
                    if "Seq Scan on connections" in text:
                        print("      ^ SEQUENTIAL SCAN of connections")
            seconds = []
            for _ in range(runs):
                async with runtime.sessions() as session:
                    started = time.perf_counter()
                    await query(RefresherRepository(session))
                    seconds.append(time.perf_counter() - started)
                    await session.rollback()
            results.append(QueryTimes(name, seconds))
        return results
    finally:
        await runtime.close()


# --------------------------------------------------------------------------- the audit table

# Token hand-out events $5..$6 of a stretch starting at $3, $4 microseconds apart: ids as
# ``new_time_ordered_ids`` makes them (milliseconds, then random bits), in time order; the
# connections ($7 of them, numbered in ``bench_ids``) spread over all of them.
SIMULATED_EVENTS = (
    "INSERT INTO connection_events"
    " (id, connection_id, organization_id, type, detail, created_at)"
    " SELECT 'evt_' || lpad(to_hex((extract(epoch FROM t) * 1000)::bigint), 12, '0')"
    " || substr(md5(random()::text), 1, 20), b.id, b.organization_id, $1, $2::json, t"
    " FROM (SELECT g, $3::timestamptz + make_interval(secs => g * $4::float8 / 1e6) AS t"
    "  FROM generate_series($5::bigint, $6::bigint) g) s"
    " JOIN bench_ids b ON b.n = (s.g * 7919) % $7"
    " ORDER BY s.g"
)


async def audit_retention(dataset: Dataset, rate: float, seconds: float) -> None:
    settings: Settings = dataset.deployment().settings()
    token_type = EventType.TOKEN_ISSUED.value
    connection = await asyncpg.connect(dataset.asyncpg_url)
    try:

        async def table_state(label: str) -> tuple[int, int]:
            rows = await connection.fetchval("SELECT count(*) FROM connection_events")
            size = await connection.fetchval("SELECT pg_total_relation_size('connection_events')")
            heap = await connection.fetchval("SELECT pg_relation_size('connection_events')")
            print(
                f"  {label:<34} {rows:>12,} rows   {size / 2**20:9.1f} MiB total "
                f"({heap / 2**20:.1f} MiB table, {(size - heap) / 2**20:.1f} MiB indexes)",
                flush=True,
            )
            return int(rows), int(size)

        real_rows, real_size = await table_state("after the load (real hand-outs)")
        detail = await connection.fetchval(
            "SELECT detail::text FROM connection_events WHERE type = $1 LIMIT 1", token_type
        )
        if detail is None:
            detail = json.dumps({"api_key_id": "key_bench", "refreshed": False})
        stretch = int(rate * seconds)
        print(
            f"  simulating {seconds:g} s of hand-outs at {rate:,.0f}/s: "
            f"{stretch:,} events in, and as many from the {seconds:g} s that left the "
            f"{settings.token_event_retention_days}-day retention"
        )
        await connection.execute(
            "CREATE TEMP TABLE bench_ids AS"
            " SELECT (row_number() OVER ()) - 1 AS n, id, organization_id FROM connections"
        )
        await connection.execute("CREATE UNIQUE INDEX ON bench_ids (n)")
        count = await connection.fetchval("SELECT count(*) FROM bench_ids")
        now = datetime.now(UTC)
        retention = timedelta(days=settings.token_event_retention_days)
        started = time.perf_counter()
        for begin in (
            now - retention - timedelta(seconds=seconds),
            now - timedelta(seconds=seconds),
        ):
            step = seconds * 1e6 / stretch  # microseconds between two events
            for low in range(0, stretch, 1_000_000):
                high = min(stretch, low + 1_000_000) - 1
                await connection.execute(
                    SIMULATED_EVENTS, token_type, detail, begin, step, low, high, count
                )
        inserted = time.perf_counter() - started
        print(
            f"  inserted {2 * stretch:,} events in {inserted:.1f} s "
            f"({2 * stretch / inserted:,.0f} rows/s, INSERT … SELECT)"
        )
        await connection.execute("ANALYZE connection_events")
        before_rows, before_size = await table_state("before pruning")
        started = time.perf_counter()
        async with open_database(settings) as sessions:
            pruned = await prune_events(sessions, settings)
        took = time.perf_counter() - started
        deleted = pruned.events + pruned.token_events
        print(
            f"  pruned {deleted:,} events in {took:.1f} s ({deleted / took:,.0f} rows/s, "
            f"batches of 5,000; {deleted / took / rate:.1f}x the hand-out rate): {pruned.as_dict()}"
        )
        await table_state("after pruning")
        await connection.execute("VACUUM connection_events")
        await table_state("after VACUUM")
        await connection.execute("CREATE EXTENSION IF NOT EXISTS pg_freespacemap")
        free = await connection.fetchval("SELECT sum(avail) FROM pg_freespace('connection_events')")
        print(f"  free for reuse in the table after VACUUM: {int(free or 0) / 2**20:.1f} MiB")
        per_row = (before_size - real_size) / max(1, before_rows - real_rows)
        steady_rows = rate * retention.total_seconds()
        print(
            f"  {per_row:.0f} bytes an event (indexes included); at {rate:,.0f} hand-outs/s the "
            f"table holds {settings.token_event_retention_days} days of them once retention "
            f"runs: {steady_rows / 1e9:.2f} billion rows, {steady_rows * per_row / 2**30:,.0f} GiB"
        )
    finally:
        await connection.close()


# --------------------------------------------------------------------------- the run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument(
        "--seconds", dest="duration", type=float, default=5.0, help="measured seconds per run"
    )
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=4, help="interleaved runs of each size")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--clients", type=int, default=1, help="load-generator processes")
    parser.add_argument("--workers", type=int, default=2, help="`serve --workers`")
    parser.add_argument("--query-runs", type=int, default=100)
    parser.add_argument("--audit-seconds", type=float, default=3600.0)
    parser.add_argument("--audit-rate", type=float, help="hand-outs/s (default: measured)")
    parser.add_argument("--keep", metavar="FILE", help="keep the databases; write FILE")
    parser.add_argument("--skip-seed", metavar="FILE", help="reuse the databases --keep kept")
    parser.add_argument("--skip-load", action="store_true")
    parser.add_argument("--skip-audit", action="store_true")
    args = parser.parse_args()
    args.client = "raw"
    print(
        f"scale benchmark: {args.small:,} and {args.connections:,} connections on PostgreSQL; "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start"
    )
    total = time.perf_counter()
    if args.skip_seed:
        state = json.loads(Path(args.skip_seed).read_text())
        small, large = (Dataset(**state[label]) for label in ("small", "large"))
    else:
        small = new_dataset("small", args.small)
        large = new_dataset("large", args.connections)
    try:
        if not args.skip_seed:
            for dataset in (small, large):
                with phase(f"seed {dataset.count:,} connections (COPY)"):
                    times = asyncio.run(seed(dataset))
                    print(
                        f"  {times.rows:,} rows (users, end users, memberships, connections) in "
                        f"{times.bulk:.1f} s: {dataset.count / times.bulk:,.0f} connections/s, "
                        f"{times.rows / times.bulk:,.0f} rows/s (sealing {times.sealing:.1f} s, "
                        f"other values {times.generating:.1f} s, COPY {times.copying:.1f} s); "
                        f"organization, app and key by the CLI first: {times.setup:.1f} s"
                    )
            with phase("ANALYZE"):
                for dataset in (small, large):
                    psql(dataset.database_name, "ANALYZE")
        if args.keep:
            Path(args.keep).write_text(json.dumps({"small": asdict(small), "large": asdict(large)}))
        rate = args.audit_rate
        if not args.skip_load:
            with phase(f"token path, {args.rounds} interleaved rounds, --workers {args.workers}"):
                measured = token_load(small, large, args)
            rate = rate or measured
        with phase(f"refresher queries, {args.query_runs} runs each"):
            times = {
                dataset.label: asyncio.run(
                    refresher_queries(dataset, args.query_runs, explain=dataset is large)
                )
                for dataset in (small, large)
            }
            print()
            for index, query in enumerate(times["large"]):
                at_small = times["small"][index]
                print(
                    f"  {query.name}: at {large.count:,} p50 {query.percentile(0.5):.2f} ms, "
                    f"p99 {query.percentile(0.99):.2f} ms; at {small.count:,} "
                    f"p50 {at_small.percentile(0.5):.2f} ms, p99 {at_small.percentile(0.99):.2f} ms"
                )
        if not args.skip_audit:
            with phase(f"audit table: {args.audit_seconds:g} s of hand-outs, retention on"):
                asyncio.run(audit_retention(large, rate or 1000.0, args.audit_seconds))
    finally:
        if not args.keep:
            for dataset in (small, large):
                drop(dataset)
    print(
        f"\ntotal {time.perf_counter() - total:.1f} s; load average at the end "
        f"{os.getloadavg()[0]:.2f}"
    )


if __name__ == "__main__":
    sys.exit(main())
