"""Proxy benchmark: a proxied `GET /{id}/proxy/user` against the same upstream called directly.

One upstream API (a minimal ASGI app under uvicorn in its own process, answering a small JSON
body with `Content-Length`, after `?delay_ms=N` milliseconds) and one real `connectors serve`
whose connections' providers-file entry has that upstream as its `api_base_url`. Connections are
seeded through the operator's import path (`connectors connections import`), expiring far in the
future so no refresh happens. For each upstream delay, the same load generator (token_path's
keep-alive raw client, its processes and windows) then drives, in interleaved rounds:

- direct: `GET /api/user?delay_ms=N` on the upstream;
- proxied: `GET /v1/personal-connectors/{id}/proxy/user?delay_ms=N` on a random connection,
  with the API key — the service authorizes the caller, loads the connection, adds its token,
  calls the upstream (the same process, the same delay: the proxy forwards the query) over its
  shared client and sends the answer back.

- floor: the same direct request through ``FLOOR_APP``, the service's own outbound client
  behind a bare ASGI app and nothing else: what any proxy on this stack pays at least.

The proxy's share of the direct throughput, and what it adds to the median latency, are the
figures (issue targets: at least 70%, at most 1 ms, at concurrency 32). The added median is
also measured without load (concurrency 1) for what a single call pays. Server CPU a call is
the upstream's for the direct runs, the service's for the proxied ones; the upstream also
serves the proxied runs, so the processes share the machine's cores with the load generator.

An upstream that answers at once (delay 0) costs a few tens of microseconds of CPU a request,
far less than any request to the service (its own `GET /livez` included; see token_path.py),
so the ratio then says how much CPU the proxy spends against almost none: no proxy reaches 70%
of it. A provider's API answers in tens of milliseconds; with such a delay (20 ms by default,
`--upstream-delay-ms 0 20 50` for more) the ratio says whether the proxy holds the throughput
a real provider allows, and the added medians what a call pays.

Run: .venv/bin/python bench/proxy.py [--connections 100] [--concurrency 32] [--rounds 4]
     [--duration 5] [--warmup 2] [--clients 1] [--client raw|httpx] [--db sqlite|postgres|both]
     [--workers 1] [--upstream-delay-ms 0 20] [--no-unloaded]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx

# The deployment helpers and the load generator are the token path benchmark's; this script
# runs from bench/ as that one does.
from token_path import (
    API,
    Deployment,
    RunResult,
    Target,
    deployment,
    free_port,
    helper_process,
    measure,
    print_run,
    served,
)

APP_KEY = "bench-api"
UPSTREAM_PATH = "user"
# The upstream: any GET answers a small JSON object, as a provider's `GET /user` would, after
# the query's `delay_ms` (a provider's own time, spent waiting, not computing).
UPSTREAM_APP = """
import asyncio, json
from urllib.parse import parse_qsl
BODY = json.dumps({"id": 1234567, "login": "bench", "name": "Bench Account",
                   "email": "bench@example.test", "plan": {"name": "free"}}).encode()
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    delay = dict(parse_qsl(scope["query_string"].decode())).get("delay_ms")
    if delay and float(delay):
        await asyncio.sleep(float(delay) / 1000)
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})
"""
# The floor of a proxy on this stack: the service's own shared outbound client (the outbound
# guard, its transport, the plain-request path the proxy takes) behind a bare ASGI app under
# uvicorn, forwarding each GET with a bearer token and nothing else: no authentication, no
# database, no route, middleware or header rules. What the proxy's own work is measured against.
FLOOR_APP = """
import sys
import uvicorn
from personal_connectors.config import Settings
from personal_connectors.outbound.client import create_client

PORT, UPSTREAM = int(sys.argv[1]), sys.argv[2]
kept = {}

async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                kept["client"] = create_client(Settings(outbound_allow_internal=True))
                await send({"type": "lifespan.startup.complete"})
            else:
                await kept["client"].aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return
    while (await receive()).get("more_body"):
        pass
    query = scope["query_string"].decode()
    client = kept["client"]
    request = client.plain_request(
        "GET",
        UPSTREAM + scope["path"] + ("?" + query if query else ""),
        headers=[("Authorization", "Bearer x")],
        content=b"",
        call_seconds=10.0,
    )
    answer = await client.send_streamed(request)
    try:
        body = await answer.aread()
    finally:
        await answer.aclose()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": answer.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": body})

uvicorn.run(app, host="127.0.0.1", port=PORT, log_level="error", access_log=False)
"""
DELAY_PARAM = "delay_ms"
TARGET_RATIO = 0.70
TARGET_ADDED_P50_MS = 1.0


@dataclass(frozen=True)
class Upstream:
    url: str
    pid: int


@contextmanager
def upstream() -> Iterator[Upstream]:
    """The upstream API in a uvicorn process of its own (uvloop and httptools when installed,
    uvicorn's defaults; no access log)."""
    port = free_port()
    code = (
        f"{UPSTREAM_APP}\nimport uvicorn\n"
        f"uvicorn.run(app, host='127.0.0.1', port={port}, log_level='error', access_log=False)"
    )
    url = f"http://127.0.0.1:{port}"

    def probe() -> None:
        httpx.get(f"{url}/api/{UPSTREAM_PATH}", timeout=1).raise_for_status()

    with helper_process([sys.executable, "-c", code], probe, "the upstream API") as pid:
        yield Upstream(url, pid)


@contextmanager
def floor(api: Upstream) -> Iterator[Upstream]:
    """``FLOOR_APP`` in a uvicorn process of its own, forwarding to ``api``."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"

    def probe() -> None:
        httpx.get(f"{url}/api/{UPSTREAM_PATH}", timeout=1).raise_for_status()

    command = [sys.executable, "-c", FLOOR_APP, str(port), api.url]
    with helper_process(command, probe, "the floor proxy") as pid:
        yield Upstream(url, pid)


@dataclass(frozen=True)
class Seeded:
    organization_id: str
    api_key: str
    connection_ids: list[str]


def seed(deployed: Deployment, api: Upstream, count: int) -> Seeded:
    """A providers-file entry whose API is the upstream, an owner with an API key and ``count``
    connections to it (tokens valid until 2099), through the import command."""
    providers_file = deployed.workdir / "providers.yaml"
    entry = {
        "display_name": "Benchmark API",
        "authorization_url": f"{api.url}/authorize",  # never used: connections are imported
        "token_url": f"{api.url}/token",
        "userinfo": {"url": f"{api.url}/api/{UPSTREAM_PATH}", "id_path": "id"},
        "api_base_url": f"{api.url}/api",
    }
    providers_file.write_text(json.dumps({APP_KEY: entry}))  # JSON is YAML
    deployed.env["CONNECTORS_PROVIDERS_FILE"] = str(providers_file)
    org = deployed.cli_json("orgs", "create", "Bench")
    assert isinstance(org, dict)
    user = deployed.cli_json("users", "create", "bench@example.test", "--org", org["id"])
    assert isinstance(user, dict)
    key = deployed.cli_json("api-keys", "create", "--user", user["id"])
    assert isinstance(key, dict)
    lines = deployed.workdir / "connections.jsonl"
    with lines.open("w") as handle:
        for number in range(count):
            record = {
                "user_id": user["id"],
                "app_key": APP_KEY,
                "account_id": str(1_000_000 + number),
                "access_token": f"at_bench_{uuid.uuid4().hex}",
                "refresh_token": f"rt_bench_{uuid.uuid4().hex}",
                "expires_at": "2099-01-01T00:00:00+00:00",
                "scopes": ["read"],
            }
            handle.write(json.dumps(record) + "\n")
    report = deployed.cli_json("connections", "import", str(lines), "--org", org["id"])
    assert isinstance(report, dict) and report["imported"] == count, report
    listed = deployed.cli_json("connections", "list", "--org", org["id"])
    assert isinstance(listed, list) and len(listed) == count
    return Seeded(org["id"], key["key"], [row["id"] for row in listed])


def check_proxied_answer(service_url: str, api: Upstream, seeded: Seeded) -> None:
    """One real call of each first: a benchmark of refusals would measure nothing useful."""
    direct = httpx.get(f"{api.url}/api/{UPSTREAM_PATH}")
    proxied = httpx.get(
        f"{service_url}{API}/{seeded.connection_ids[0]}/proxy/{UPSTREAM_PATH}",
        params={"organization_id": seeded.organization_id},
        headers={"X-API-Key": seeded.api_key},
    )
    assert proxied.status_code == 200, proxied.text
    assert proxied.headers["x-connectors-proxy"] == "upstream"
    assert proxied.content == direct.content
    assert "content-length" in proxied.headers  # the load generator reads by length


def interleaved(
    service: tuple[str, int],
    api: Upstream,
    bare: Upstream,
    direct: Target,
    proxied: Target,
    args: argparse.Namespace,
) -> tuple[RunResult, RunResult, RunResult]:
    """Direct, floor and proxied runs in rounds alternating their order, summed: the machine
    drifts between windows by more than the difference measured (see token_path.interleaved)."""
    rounds: list[tuple[RunResult, RunResult, RunResult]] = []
    for number in range(1, args.rounds + 1):
        runs = {
            "base": lambda: measure(api.url, api.pid, direct, args),
            "floor": lambda: measure(bare.url, bare.pid, direct, args),
            "hot": lambda: measure(service[0], service[1], proxied, args),
        }
        order = list(runs) if number % 2 else list(reversed(runs))
        done = {name: runs[name]() for name in order}
        base, least, hot = done["base"], done["floor"], done["hot"]
        rounds.append((base, least, hot))
        print(
            f"  round {number}: direct {base.throughput:6.0f}, floor {least.throughput:6.0f}, "
            f"proxied {hot.throughput:6.0f} req/s = {hot.throughput / base.throughput:4.0%}   "
            f"p50 {base.p50_ms:5.2f} / {least.p50_ms:5.2f} / {hot.p50_ms:5.2f} ms"
        )
    return (
        RunResult.combined([run[0] for run in rounds]),
        RunResult.combined([run[1] for run in rounds]),
        RunResult.combined([run[2] for run in rounds]),
    )


def unloaded(
    service: tuple[str, int],
    api: Upstream,
    bare: Upstream,
    direct: Target,
    proxied: Target,
    args: argparse.Namespace,
) -> tuple[float, float]:
    """What one call alone pays, through the proxy and through the floor: the added medians at
    concurrency 1, direct runs around the others."""
    alone = argparse.Namespace(**{**vars(args), "concurrency": 1, "clients": 1})
    base = measure(api.url, api.pid, direct, alone)
    hot = measure(service[0], service[1], proxied, alone)
    least = measure(bare.url, bare.pid, direct, alone)
    again = measure(api.url, api.pid, direct, alone)
    base_p50 = (base.p50_ms + again.p50_ms) / 2
    print(
        f"  unloaded (concurrency 1): direct p50 {base_p50:5.2f} ms, proxied p50 "
        f"{hot.p50_ms:5.2f} ms: the proxy adds {hot.p50_ms - base_p50:.2f} ms "
        f"(server {hot.server_cpu_per_request_us:4.0f} us a call); the floor adds "
        f"{least.p50_ms - base_p50:.2f} ms ({least.server_cpu_per_request_us:4.0f} us a call)"
    )
    return hot.p50_ms - base_p50, least.p50_ms - base_p50


@dataclass(frozen=True)
class Row:
    """One database and upstream delay's figures, for the summary."""

    db: str
    delay_ms: float
    base: RunResult
    least: RunResult  # the floor
    hot: RunResult
    added_alone_ms: tuple[float, float] | None  # the proxy's, the floor's

    @property
    def ratio(self) -> float:
        return self.hot.throughput / self.base.throughput

    @property
    def added_ms(self) -> float:
        return self.hot.p50_ms - self.base.p50_ms

    @property
    def meets(self) -> bool:
        return (
            self.ratio >= TARGET_RATIO
            and self.added_ms <= TARGET_ADDED_P50_MS
            and self.hot.errors == 0
            and self.base.errors == 0
        )


def report(row: Row, concurrency: int) -> None:
    for result in (row.base, row.least, row.hot):
        print_run(result)
    print(
        f"  floor/direct throughput: {row.least.throughput / row.base.throughput:.0%}, added p50 "
        f"{row.least.p50_ms - row.base.p50_ms:.2f} ms"
    )
    verdict = "meets" if row.meets else "MISSES"
    target = (
        f"proxied >= {TARGET_RATIO:.0%} of direct throughput, added p50 <= "
        f"{TARGET_ADDED_P50_MS:g} ms at concurrency {concurrency}, no errors"
    )
    print(
        f"  proxied/direct throughput: {row.ratio:.0%}, added p50 {row.added_ms:.2f} ms  "
        f"({verdict} the target: {target})"
    )


def summary(rows: list[Row], concurrency: int) -> None:
    print(
        f"\nsummary (concurrency {concurrency}; added p50 alone: concurrency 1; CPU: the "
        "service's a proxied call)"
    )
    print(
        f"  {'db':<9}{'delay':>6} {'direct req/s':>13} {'proxied req/s':>14} {'ratio':>6} "
        f"{'p50 d/p ms':>13} {'p99 d/p ms':>13} {'added p50':>10} {'alone':>7} {'CPU us':>7}"
        f"   floor: {'ratio':>5} {'added p50':>9} {'alone':>6} {'CPU us':>6}"
    )
    for row in rows:
        alone = least_alone = "-"
        if row.added_alone_ms is not None:
            alone, least_alone = (f"{added:.2f}" for added in row.added_alone_ms)
        print(
            f"  {row.db:<9}{row.delay_ms:>6g} {row.base.throughput:>13,.0f} "
            f"{row.hot.throughput:>14,.0f} {row.ratio:>6.0%} "
            f"{row.base.p50_ms:>6.2f}/{row.hot.p50_ms:<6.2f} "
            f"{row.base.p99_ms:>6.2f}/{row.hot.p99_ms:<6.2f} {row.added_ms:>10.2f} "
            f"{alone:>7} {row.hot.server_cpu_per_request_us:>7.0f}"
            f"  {'meets' if row.meets else 'misses'}"
            f"  {row.least.throughput / row.base.throughput:>5.0%} "
            f"{row.least.p50_ms - row.base.p50_ms:>9.2f} {least_alone:>6} "
            f"{row.least.server_cpu_per_request_us:>6.0f}"
        )


def bench_backend(db: str, args: argparse.Namespace) -> list[Row]:
    print(f"\n[{db}] seeding {args.connections} connections with `connectors connections import`")
    rows: list[Row] = []
    with upstream() as api, floor(api) as bare, deployment(db) as deployed:
        seeded = seed(deployed, api, args.connections)
        with served(deployed, workers=args.workers) as service:
            check_proxied_answer(service[0], api, seeded)
            for delay in args.upstream_delay_ms:
                print(f"  [{db}] upstream delay {delay:g} ms")
                query = {DELAY_PARAM: f"{delay:g}"}
                direct = Target(
                    "GET upstream (direct)", "GET", [f"/api/{UPSTREAM_PATH}"], query, {}
                )
                proxied = Target(
                    "GET /{id}/proxy/user",
                    "GET",
                    [
                        f"{API}/{connection_id}/proxy/{UPSTREAM_PATH}"
                        for connection_id in seeded.connection_ids
                    ],
                    {"organization_id": seeded.organization_id, **query},
                    {"X-API-Key": seeded.api_key},
                )
                base, least, hot = interleaved(service, api, bare, direct, proxied, args)
                alone = (
                    unloaded(service, api, bare, direct, proxied, args) if args.unloaded else None
                )
                row = Row(db, delay, base, least, hot, alone)
                report(row, args.concurrency)
                rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--duration", type=float, default=5.0, help="measured seconds per run")
    parser.add_argument("--rounds", type=int, default=4, help="interleaved runs of each, summed")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds first")
    parser.add_argument("--clients", type=int, default=1, help="load-generator processes")
    parser.add_argument("--client", choices=("raw", "httpx"), default="raw")
    parser.add_argument("--db", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument(
        "--workers", type=int, default=1, help="`connectors serve --workers` (default 1)"
    )
    parser.add_argument(
        "--upstream-delay-ms",
        type=float,
        nargs="+",
        default=[0.0, 20.0],
        metavar="MS",
        help="the upstream answers after this long, as a real provider would; one run each "
        "(default: 0 20)",
    )
    parser.add_argument(
        "--no-unloaded",
        dest="unloaded",
        action="store_false",
        help="skip the added median at concurrency 1",
    )
    args = parser.parse_args()
    if args.clients < 1 or args.concurrency < args.clients:
        parser.error("need 1 <= --clients <= --concurrency")
    if any(delay < 0 for delay in args.upstream_delay_ms):
        parser.error("--upstream-delay-ms must not be negative")
    delays = ", ".join(f"{delay:g}" for delay in args.upstream_delay_ms)
    print(
        f"proxy benchmark: {args.connections} connections, concurrency {args.concurrency} over "
        f"{args.clients} client process(es), {args.rounds} interleaved rounds of "
        f"{args.warmup:g} s warm-up + {args.duration:g} s measured each; upstream delays "
        f"{delays} ms; service workers {args.workers}; {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.2f} at start"
    )
    rows: list[Row] = []
    for db in ("sqlite", "postgres") if args.db == "both" else (args.db,):
        rows.extend(bench_backend(db, args))
    summary(rows, args.concurrency)
    print(f"\nload average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
