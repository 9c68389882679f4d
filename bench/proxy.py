"""Proxy benchmark: a proxied `GET /{id}/proxy/user` against the same upstream called directly.

One upstream API (a minimal ASGI app under uvicorn in its own process, answering a small JSON
body with `Content-Length`) and one real `connectors serve` whose connections' providers-file
entry has that upstream as its `api_base_url`. Connections are seeded through the operator's
import path (`connectors connections import`), expiring far in the future so no refresh
happens. The same load generator (token_path's keep-alive raw client, its processes and
windows) then drives, in interleaved rounds:

- direct: `GET /api/user` on the upstream;
- proxied: `GET /v1/personal-connectors/{id}/proxy/user` on a random connection, with the
  API key — the service authorizes the caller, loads the connection, adds its token, calls
  the upstream over its shared client and streams the answer back.

The proxy's share of the direct throughput, and what it adds to the median latency, are the
figures (issue targets: at least 70%, at most 1 ms, at concurrency 32). The added median is
also measured without load (one connection) for what a single call pays. The upstream's CPU is
printed for the direct runs, the service's for the proxied ones; the upstream also serves the
proxied runs, so the two share the machine's cores with the load generator.

An upstream that answers at once (the default) costs a few tens of microseconds of CPU a
request, far less than any request to the service (its own `GET /livez` included; see
token_path.py), so the ratio then says how much CPU the proxy spends against almost none.
`--upstream-delay-ms` makes the upstream wait before answering, as a provider's API does: the
ratio then says whether the proxy holds the throughput a real provider allows.

Run: .venv/bin/python bench/proxy.py [--connections 100] [--concurrency 32] [--rounds 4]
     [--duration 5] [--warmup 2] [--clients 1] [--client raw|httpx] [--db sqlite|postgres|both]
     [--upstream-delay-ms 0] [--no-unloaded]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
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
    measure,
    print_run,
    served,
)

APP_KEY = "bench-api"
UPSTREAM_PATH = "user"
# The upstream: any GET answers a small JSON object, as a provider's `GET /user` would.
UPSTREAM_APP = """
import asyncio, json, sys
DELAY = float(sys.argv[1])
BODY = json.dumps({"id": 1234567, "login": "bench", "name": "Bench Account",
                   "email": "bench@example.test", "plan": {"name": "free"}}).encode()
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    if DELAY:
        await asyncio.sleep(DELAY)
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})
"""
TARGET_RATIO = 0.70
TARGET_ADDED_P50_MS = 1.0


@dataclass(frozen=True)
class Upstream:
    url: str
    pid: int


@contextmanager
def upstream(delay_ms: float) -> Iterator[Upstream]:
    """The upstream API in a uvicorn process of its own (uvloop and httptools when installed,
    uvicorn's defaults; no access log), answering after ``delay_ms`` (a provider's own time,
    spent waiting, not computing)."""
    port = free_port()
    code = (
        f"{UPSTREAM_APP}\nimport uvicorn\n"
        f"uvicorn.run(app, host='127.0.0.1', port={port}, log_level='error', access_log=False)"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code, str(delay_ms / 1000)], stdin=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{url}/api/{UPSTREAM_PATH}", timeout=1).raise_for_status()
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("the upstream API did not start") from None
                time.sleep(0.1)
        yield Upstream(url, process.pid)
    finally:
        process.terminate()
        process.wait(timeout=10)


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
    direct: Target,
    proxied: Target,
    args: argparse.Namespace,
) -> tuple[RunResult, RunResult]:
    """Rounds alternating which goes first, summed: the machine drifts between windows by
    more than the difference measured (see token_path.interleaved)."""
    rounds: list[tuple[RunResult, RunResult]] = []
    for number in range(1, args.rounds + 1):
        if number % 2:
            base = measure(api.url, api.pid, direct, args)
            hot = measure(service[0], service[1], proxied, args)
        else:
            hot = measure(service[0], service[1], proxied, args)
            base = measure(api.url, api.pid, direct, args)
        rounds.append((base, hot))
        print(
            f"  round {number}: {base.throughput:6.0f} vs {hot.throughput:6.0f} req/s "
            f"= {hot.throughput / base.throughput:4.0%}   "
            f"p50 {base.p50_ms:5.2f} vs {hot.p50_ms:5.2f} ms"
        )
    return (
        RunResult.combined([base for base, _ in rounds]),
        RunResult.combined([hot for _, hot in rounds]),
    )


def unloaded(
    service: tuple[str, int],
    api: Upstream,
    direct: Target,
    proxied: Target,
    args: argparse.Namespace,
) -> float:
    """What one call alone pays: the added median at concurrency 1, one round each way."""
    alone = argparse.Namespace(**{**vars(args), "concurrency": 1, "clients": 1})
    base = measure(api.url, api.pid, direct, alone)
    hot = measure(service[0], service[1], proxied, alone)
    again = measure(api.url, api.pid, direct, alone)
    base_p50 = (base.p50_ms + again.p50_ms) / 2
    print(
        f"  unloaded (concurrency 1): direct p50 {base_p50:5.2f} ms, proxied p50 "
        f"{hot.p50_ms:5.2f} ms: the proxy adds {hot.p50_ms - base_p50:.2f} ms"
    )
    return hot.p50_ms - base_p50


def report(base: RunResult, hot: RunResult, concurrency: int) -> None:
    for result in (base, hot):
        print_run(result)
    ratio = hot.throughput / base.throughput
    added = hot.p50_ms - base.p50_ms
    meets = (
        ratio >= TARGET_RATIO
        and added <= TARGET_ADDED_P50_MS
        and hot.errors == 0
        and base.errors == 0
    )
    verdict = "meets" if meets else "MISSES"
    target = (
        f"proxied >= {TARGET_RATIO:.0%} of direct throughput, added p50 <= "
        f"{TARGET_ADDED_P50_MS:g} ms at concurrency {concurrency}, no errors"
    )
    print(
        f"  proxied/direct throughput: {ratio:.0%}, added p50 {added:.2f} ms  "
        f"({verdict} the target: {target})"
    )


def bench_backend(db: str, args: argparse.Namespace) -> None:
    print(f"\n[{db}] seeding {args.connections} connections with `connectors connections import`")
    with upstream(args.upstream_delay_ms) as api, deployment(db) as deployed:
        seeded = seed(deployed, api, args.connections)
        direct = Target("GET upstream (direct)", "GET", [f"/api/{UPSTREAM_PATH}"], {}, {})
        proxied = Target(
            "GET /{id}/proxy/user",
            "GET",
            [
                f"{API}/{connection_id}/proxy/{UPSTREAM_PATH}"
                for connection_id in seeded.connection_ids
            ],
            {"organization_id": seeded.organization_id},
            {"X-API-Key": seeded.api_key},
        )
        with served(deployed) as service:
            check_proxied_answer(service[0], api, seeded)
            report(*interleaved(service, api, direct, proxied, args), args.concurrency)
            if args.unloaded:
                unloaded(service, api, direct, proxied, args)


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
        "--upstream-delay-ms",
        type=float,
        default=0.0,
        help="the upstream answers after this long, as a real provider would (default: at once)",
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
    print(
        f"proxy benchmark: {args.connections} connections, concurrency {args.concurrency} over "
        f"{args.clients} client process(es), {args.rounds} interleaved rounds of "
        f"{args.warmup:g} s warm-up + {args.duration:g} s measured each; upstream delay "
        f"{args.upstream_delay_ms:g} ms; {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.2f} at start"
    )
    for db in ("sqlite", "postgres") if args.db == "both" else (args.db,):
        bench_backend(db, args)
    print(f"\nload average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
