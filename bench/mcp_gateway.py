"""MCP gateway benchmark: `tools/call` through the gateway against the same MCP server directly.

One upstream MCP server (the official SDK's low-level ``Server`` over Streamable HTTP, under
uvicorn in a process of its own, JSON answers, one trivial tool ``echo`` among a few) and one
real `connectors serve` whose providers-file entry has that server as its ``mcp.url``.
Connections are seeded through the operator's import path (`connectors connections import`),
tokens expiring far in the future so no refresh happens. The same load generator then drives,
in interleaved rounds, at the same concurrency:

- direct: `tools/call echo` at the upstream server, in a session of its own per client
  connection (the server keeps sessions, as most remote MCP servers do);
- gateway: the same call at `/v1/personal-connectors/mcp` (tool `bench-mcp__echo`) and at
  `/v1/personal-connectors/{id}/mcp` (tool `echo`) with the API key: the service authenticates
  the caller, resolves the tool to a connection, adds its token and forwards the call to the
  same upstream server, whose answer comes back unchanged.

- SDK-only floor: the same direct call through ``FLOOR_APP``, a process that is only the SDK's
  stateless server in front of one kept session of the SDK's client (no authentication,
  database or token): the least a gateway built on the SDK at both ends (SPEC §11) can cost.

Targets (issue 14): the gateway at least 70% of the direct throughput and at most 2 ms added to
the median, at concurrency 16. The upstream's CPU is printed for the direct runs, the service's
for the gateway runs (the upstream serves those too: all share the machine's cores).

Then `tools/list` at `/mcp` for an end user (service key + `end_user_id`) who has 10 MCP
connections, answered from the per-connection tool cache (warmed by one call first): its p50,
p99 and throughput.

The load generator (one for every side): token_path's minimal keep-alive HTTP/1.1 client on
uvloop, here POSTing JSON-RPC bodies encoded once up front (built from the SDK's own
``JSONRPCRequest``), each connection first running the handshake (`initialize`,
`notifications/initialized`) and then sending its `Mcp-Session-Id` (when the server gave one)
and `MCP-Protocol-Version` with every call. Raw rather than httpx or the SDK's client: both
cost the client far more CPU per call (httpx several hundred microseconds; the SDK's client a
millisecond and more: task groups, memory streams, validation), which on a 2-core machine takes
the cores the two servers need and measures the client (see token_path.py). `--client httpx`
swaps in an httpx client with the same requests, for comparison.

Run: .venv/bin/python bench/mcp_gateway.py [--seconds 5] [--concurrency 16] [--rounds 3]
     [--warmup 2] [--db sqlite|postgresql|both] [--client raw|httpx] [--list-connections 10]
     [--upstream stateful|stateless] [--tool-delay-ms 0]

An echo that answers at once (the default) costs the upstream about 0.3 ms of CPU, far less than
any request to the service (authentication, a database read, the SDK's server and client), so
the ratio then says how much CPU the gateway spends against almost none. `--tool-delay-ms` makes
the tool wait before answering, as a real one does: the ratio then says whether the gateway
holds the throughput such a tool allows.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
from mcp.types import JSONRPCNotification, JSONRPCRequest
from mcp_types.version import LATEST_HANDSHAKE_VERSION

# The deployment helpers and the result records are the token path benchmark's; this script
# runs from bench/ as that one does.
from token_path import (
    API,
    Deployment,
    RawConnection,
    RunResult,
    deployment,
    free_port,
    helper_process,
    print_run,
    process_cpu_seconds,
    served,
)

APP_KEY = "bench-mcp"
TOOL = "echo"
ARGUMENTS = {"text": "hello from the benchmark"}
TARGET_RATIO = 0.70
TARGET_ADDED_P50_MS = 2.0

# The upstream MCP server: `echo` answers its text; the other tools make a list worth caching.
UPSTREAM_APP = """
import asyncio, sys
import uvicorn
from mcp.server.lowlevel import Server
from mcp.server.transport_security import TransportSecuritySettings
from mcp.types import CallToolResult, ListToolsResult, TextContent, Tool

PORT, STATELESS, DELAY = int(sys.argv[1]), sys.argv[2] == "stateless", float(sys.argv[3])
SCHEMA = {"type": "object", "properties": {"text": {"type": "string"}}}
TOOLS = [Tool(name="echo", description="Answers its text.", input_schema=SCHEMA)] + [
    Tool(name=f"tool_{n}", description=f"Tool number {n}.", input_schema=SCHEMA)
    for n in range(7)
]

async def list_tools(ctx, params):
    return ListToolsResult(tools=TOOLS)

async def call_tool(ctx, params):
    if DELAY:
        await asyncio.sleep(DELAY)
    text = str((params.arguments or {}).get("text", ""))
    return CallToolResult(content=[TextContent(text=text)])

server = Server("bench-mcp", version="1.0.0", on_list_tools=list_tools, on_call_tool=call_tool)
app = server.streamable_http_app(
    json_response=True,
    stateless_http=STATELESS,
    transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
)
uvicorn.run(app, host="127.0.0.1", port=PORT, log_level="error", access_log=False)
"""


# The floor of any gateway built as SPEC §11 asks (the SDK's stateless server in front, the SDK's
# client behind): a process doing only that, with no authentication, database or token. Its
# `echo` forwards to the upstream in one kept session, shared by every call.
FLOOR_APP = """
import contextlib, sys
import httpx2, uvicorn
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.server.lowlevel import Server
from mcp.server.transport_security import TransportSecuritySettings
from mcp.types import CallToolResult

PORT, UPSTREAM = int(sys.argv[1]), sys.argv[2]
kept = {}

async def call_tool(ctx, params):
    result = await kept["session"].call_tool(params.name, params.arguments)
    return CallToolResult.model_validate(result.model_dump(by_alias=True, exclude_none=True))

server = Server("floor", version="1.0.0", on_call_tool=call_tool)
app = server.streamable_http_app(
    json_response=True,
    stateless_http=True,
    transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
)
inner = app.router.lifespan_context

@contextlib.asynccontextmanager
async def lifespan(app):
    async with (
        inner(app),
        httpx2.AsyncClient() as client,
        streamable_http_client(UPSTREAM, http_client=client) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        kept["session"] = session
        yield

app.router.lifespan_context = lifespan
uvicorn.run(app, host="127.0.0.1", port=PORT, log_level="error", access_log=False)
"""


@dataclass(frozen=True)
class Upstream:
    url: str  # the MCP endpoint
    pid: int


@contextmanager
def upstream(mode: str, delay_ms: float = 0.0) -> Iterator[Upstream]:
    """The upstream MCP server in a uvicorn process of its own (uvloop and httptools when
    installed, uvicorn's defaults; no access log); ``echo`` answers after ``delay_ms`` (a
    tool's own time, spent waiting, not computing)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/mcp"
    command = [sys.executable, "-c", UPSTREAM_APP, str(port), mode, str(delay_ms / 1000)]
    with helper_process(
        command, lambda: httpx.get(url, timeout=1), "the upstream MCP server"
    ) as pid:
        yield Upstream(url, pid)


@contextmanager
def floor(mcp: Upstream) -> Iterator[Upstream]:
    """``FLOOR_APP`` in a uvicorn process of its own, forwarding to ``mcp``."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/mcp"
    command = [sys.executable, "-c", FLOOR_APP, str(port), mcp.url]

    def probe() -> object:  # a POST: a stateless server's GET opens a stream that stays open
        return httpx.post(url, content=b"{}", timeout=1)

    with helper_process(command, probe, "the floor gateway") as pid:
        yield Upstream(url, pid)


# --------------------------------------------------------------------------- the seeding


@dataclass(frozen=True)
class Seeded:
    organization_id: str
    api_key: str
    connection_id: str  # the API-key user's one connection
    service_key: str
    end_user_id: str  # an end user with ``list_connections`` connections


def seed(deployed: Deployment, mcp: Upstream, list_connections: int) -> Seeded:
    """A providers-file entry whose MCP server is the upstream; an owner with an API key and
    one connection; an end user with ``list_connections``; all through the import command."""
    base = mcp.url.removesuffix("/mcp")
    entry = {
        "display_name": "Benchmark MCP",
        "authorization_url": f"{base}/authorize",  # never used: connections are imported
        "token_url": f"{base}/token",
        "userinfo": {"url": f"{base}/userinfo", "id_path": "id"},
        "mcp": {"url": mcp.url},
    }
    providers_file = deployed.workdir / "providers.yaml"
    providers_file.write_text(json.dumps({APP_KEY: entry}))  # JSON is YAML
    deployed.env["CONNECTORS_PROVIDERS_FILE"] = str(providers_file)
    org = deployed.cli_json("orgs", "create", "Bench")
    assert isinstance(org, dict)
    user = deployed.cli_json("users", "create", "bench@example.test", "--org", org["id"])
    assert isinstance(user, dict)
    key = deployed.cli_json("api-keys", "create", "--user", user["id"])
    service = deployed.cli_json("api-keys", "create", "--org", org["id"], "--service")
    assert isinstance(key, dict) and isinstance(service, dict)
    end_user_id = "eu-bench"
    owners: list[dict[str, str]] = [{"user_id": user["id"]}]
    owners += [{"end_user_id": end_user_id}] * list_connections
    lines = deployed.workdir / "connections.jsonl"
    with lines.open("w") as handle:
        for number, owner in enumerate(owners):
            record = {
                **owner,
                "app_key": APP_KEY,
                "account_id": str(1_000_000 + number),
                "access_token": f"at_bench_{uuid.uuid4().hex}",
                "refresh_token": f"rt_bench_{uuid.uuid4().hex}",
                "expires_at": "2099-01-01T00:00:00+00:00",
                "scopes": ["read"],
            }
            handle.write(json.dumps(record) + "\n")
    report = deployed.cli_json("connections", "import", str(lines), "--org", org["id"])
    assert isinstance(report, dict) and report["imported"] == len(owners), report
    listed = deployed.cli_json("connections", "list", "--org", org["id"])
    assert isinstance(listed, list)
    mine = [row["id"] for row in listed if row.get("user_id") == user["id"]]
    assert len(mine) == 1, listed
    return Seeded(org["id"], key["key"], mine[0], service["key"], end_user_id)


# --------------------------------------------------------------------------- the load


def message(request_id: int, method: str, params: dict[str, object] | None = None) -> bytes:
    """A JSON-RPC request as the SDK's own model encodes it."""
    built = JSONRPCRequest(jsonrpc="2.0", id=request_id, method=method, params=params)
    return built.model_dump_json(by_alias=True, exclude_none=True).encode()


INITIALIZE = message(
    1,
    "initialize",
    {
        "protocolVersion": LATEST_HANDSHAKE_VERSION,
        "capabilities": {},
        "clientInfo": {"name": "bench", "version": "1.0"},
    },
)
INITIALIZED = (
    JSONRPCNotification(jsonrpc="2.0", method="notifications/initialized")
    .model_dump_json(by_alias=True, exclude_none=True)
    .encode()
)


@dataclass(frozen=True)
class Target:
    """What every request of a run is: a POST of one JSON-RPC body to one path."""

    name: str
    base_url: str  # scheme://host:port
    path: str  # with its query
    headers: dict[str, str]
    body: bytes
    server_pid: int


@dataclass(frozen=True)
class ClientJob:
    target: Target
    concurrency: int
    start_at: float  # wall clock: all client processes begin together
    warmup: float
    duration: float
    client: str  # "raw" or "httpx"


@dataclass(frozen=True)
class ClientResult:
    latencies: list[float]
    errors: int
    cpu_seconds: float


def head(target: Target, body: bytes, session_id: str | None) -> bytes:
    host = target.base_url.removeprefix("http://")
    headers = {
        "Host": host,
        "Content-Type": "application/json",
        "Accept": "application/json, text/event-stream",
        **target.headers,
    }
    if session_id is not None:
        headers["Mcp-Session-Id"] = session_id
        headers["MCP-Protocol-Version"] = LATEST_HANDSHAKE_VERSION
    lines = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    return f"POST {target.path} HTTP/1.1\r\n{lines}Content-Length: {len(body)}\r\n\r\n".encode()


def answered(status: int, body: bytes) -> bool:
    """A result, not a JSON-RPC error or a tool's ``isError``."""
    return status == 200 and b'"error"' not in body and b'"isError":true' not in body


async def read_answer(connection: RawConnection) -> tuple[int, dict[str, str], bytes]:
    header = await connection.reader.readuntil(b"\r\n\r\n")
    status = int(header[9:12])
    fields: dict[str, str] = {}
    for line in header.split(b"\r\n")[1:]:
        name, _, value = line.decode("latin-1").partition(":")
        fields[name.strip().lower()] = value.strip()
    if "content-length" not in fields:
        raise RuntimeError("the benchmark client needs a Content-Length on every answer")
    body = await connection.reader.readexactly(int(fields["content-length"]))
    return status, fields, body


async def raw_sender(target: Target) -> tuple[Callable[[], Awaitable[bool]], Callable[[], None]]:
    """A keep-alive connection whose MCP session is initialised; a call sends the target."""
    connection = await RawConnection.open(target.base_url)
    connection.writer.write(head(target, INITIALIZE, None) + INITIALIZE)
    status, fields, _ = await read_answer(connection)
    if status != 200:
        raise RuntimeError(f"{target.name}: initialize answered {status}")
    session_id = fields.get("mcp-session-id")
    connection.writer.write(head(target, INITIALIZED, session_id) + INITIALIZED)
    await read_answer(connection)
    prepared = head(target, target.body, session_id) + target.body

    async def send() -> bool:
        connection.writer.write(prepared)
        status, _, body = await read_answer(connection)
        return answered(status, body)

    return send, connection.close


async def httpx_sender(
    target: Target, client: httpx.AsyncClient
) -> tuple[Callable[[], Awaitable[bool]], Callable[[], None]]:
    headers = {
        "Content-Type": "application/json",
        "Accept": "application/json, text/event-stream",
        **target.headers,
    }
    started = await client.post(target.path, content=INITIALIZE, headers=headers)
    started.raise_for_status()
    session_id = started.headers.get("mcp-session-id")
    if session_id is not None:
        headers["Mcp-Session-Id"] = session_id
        headers["MCP-Protocol-Version"] = LATEST_HANDSHAKE_VERSION
    await client.post(target.path, content=INITIALIZED, headers=headers)

    async def send() -> bool:
        answer = await client.post(target.path, content=target.body, headers=headers)
        body = answer.content
        return (
            answer.status_code == 200 and b'"error"' not in body and b'"isError":true' not in body
        )

    return send, lambda: None


def run_client(job: ClientJob) -> ClientResult:
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
        pass
    return asyncio.run(_drive(job))


async def _drive(job: ClientJob) -> ClientResult:
    latencies: list[float] = []
    errors = 0
    cpu_at_window: list[float] = []
    client: httpx.AsyncClient | None = None
    if job.client == "httpx":
        limits = httpx.Limits(
            max_connections=job.concurrency, max_keepalive_connections=job.concurrency
        )
        client = httpx.AsyncClient(base_url=job.target.base_url, limits=limits, timeout=30)
        senders = [await httpx_sender(job.target, client) for _ in range(job.concurrency)]
    else:
        senders = [await raw_sender(job.target) for _ in range(job.concurrency)]
    await asyncio.sleep(max(0.0, job.start_at - time.time()))
    begin = time.perf_counter()
    window_start = begin + job.warmup
    window_end = window_start + job.duration

    async def worker(send: Callable[[], Awaitable[bool]]) -> None:
        nonlocal errors
        await asyncio.sleep(random.random() * 0.01)  # not all in one burst; not security
        while True:
            sent = time.perf_counter()
            if sent >= window_end:
                return
            good = await send()
            done = time.perf_counter()
            if window_start <= sent and done <= window_end:
                if good:
                    latencies.append(done - sent)
                else:
                    errors += 1

    async def cpu_marks() -> None:
        await asyncio.sleep(job.warmup)
        cpu_at_window.append(time.process_time())
        await asyncio.sleep(job.duration)
        cpu_at_window.append(time.process_time())

    await asyncio.gather(cpu_marks(), *(worker(send) for send, _ in senders))
    for _, close in senders:
        close()
    if client is not None:
        await client.aclose()
    return ClientResult(latencies, errors, cpu_at_window[1] - cpu_at_window[0])


def measure(target: Target, args: argparse.Namespace, concurrency: int | None = None) -> RunResult:
    """One run of ``target`` in one load-generator process."""
    start_at = time.time() + 1.5  # room for the client process to start and initialise
    job = ClientJob(
        target, concurrency or args.concurrency, start_at, args.warmup, args.seconds, args.client
    )
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        pending = pool.map_async(run_client, [job])
        time.sleep(max(0.0, start_at + args.warmup - time.time()))
        server_before = process_cpu_seconds(target.server_pid)
        time.sleep(args.seconds)
        server_after = process_cpu_seconds(target.server_pid)
        (result,) = pending.get(timeout=args.warmup + args.seconds + 120)
    if not result.latencies:
        raise SystemExit(f"{target.name}: no call completed in the measured window")
    return RunResult(
        name=target.name,
        latencies=sorted(result.latencies),
        errors=result.errors,
        duration=args.seconds,
        client_cpu=result.cpu_seconds / args.seconds,
        server_cpu=(server_after - server_before) / args.seconds,
    )


# --------------------------------------------------------------------------- the checks


def check_answers(targets: list[Target], expected_tools: int | None = None) -> None:
    """One real call of each first, read with the SDK's models: a benchmark of refusals or
    errors would measure nothing useful."""
    from mcp.types import CallToolResult, ListToolsResult

    for target in targets:
        with httpx.Client(base_url=target.base_url, timeout=30) as client:
            headers = {
                "Content-Type": "application/json",
                "Accept": "application/json, text/event-stream",
                **target.headers,
            }
            started = client.post(target.path, content=INITIALIZE, headers=headers)
            assert started.status_code == 200, (target.name, started.text)
            if "mcp-session-id" in started.headers:
                headers["Mcp-Session-Id"] = started.headers["mcp-session-id"]
                headers["MCP-Protocol-Version"] = LATEST_HANDSHAKE_VERSION
            client.post(target.path, content=INITIALIZED, headers=headers)
            answer = client.post(target.path, content=target.body, headers=headers)
            assert answer.status_code == 200, (target.name, answer.text)
            assert "content-length" in answer.headers  # the load generator reads by length
            result = answer.json()["result"]
            if expected_tools is None:
                called = CallToolResult.model_validate(result)
                assert not called.is_error, (target.name, result)
                assert called.content[0].text == ARGUMENTS["text"], result  # type: ignore[union-attr]
            else:
                listed = ListToolsResult.model_validate(result)
                assert len(listed.tools) == expected_tools, (target.name, len(listed.tools))


# --------------------------------------------------------------------------- the report


def interleaved(targets: list[Target], args: argparse.Namespace) -> list[RunResult]:
    """Rounds rotating which target goes first, summed: the machine drifts between windows by
    more than the difference measured (see token_path.interleaved)."""
    rounds: list[list[RunResult]] = []
    for number in range(args.rounds):
        shift = number % len(targets)
        order = targets[shift:] + targets[:shift]
        results = {target.name: measure(target, args) for target in order}
        ordered = [results[target.name] for target in targets]
        rounds.append(ordered)
        base = ordered[0]
        print(
            f"  round {number + 1}: "
            + "   ".join(
                f"{run.name}: {run.throughput:5.0f}/s"
                + ("" if run is base else f" ({run.throughput / base.throughput:4.0%})")
                + f" p50 {run.p50_ms:5.2f} ms"
                for run in ordered
            )
        )
    return [RunResult.combined([run[index] for run in rounds]) for index in range(len(targets))]


def report(results: list[RunResult]) -> None:
    base, *gateways = results
    for result in results:
        print_run(result)
    for hot in gateways:
        ratio = hot.throughput / base.throughput
        added = hot.p50_ms - base.p50_ms
        meets = (
            ratio >= TARGET_RATIO
            and added <= TARGET_ADDED_P50_MS
            and hot.errors == 0
            and base.errors == 0
        )
        print(
            f"  {hot.name}: {ratio:.0%} of direct throughput, added p50 {added:.2f} ms, "
            f"added p99 {hot.p99_ms - base.p99_ms:.2f} ms  ({'meets' if meets else 'MISSES'} "
            f"the target: >= {TARGET_RATIO:.0%}, <= {TARGET_ADDED_P50_MS:g} ms, no errors)"
        )


def bench_backend(db: str, args: argparse.Namespace) -> None:
    print(f"\n[{db}] upstream MCP server ({args.upstream}); seeding through the import command")
    with (
        upstream(args.upstream, args.tool_delay_ms) as mcp,
        floor(mcp) as bare,
        deployment(db) as deployed,
    ):
        seeded = seed(deployed, mcp, args.list_connections)
        host = mcp.url.removesuffix("/mcp")
        call = message(2, "tools/call", {"name": TOOL, "arguments": ARGUMENTS})
        prefixed = message(2, "tools/call", {"name": f"{APP_KEY}__{TOOL}", "arguments": ARGUMENTS})
        with served(deployed) as (service_url, service_pid):
            org = f"organization_id={seeded.organization_id}"
            key = {"X-API-Key": seeded.api_key}
            direct = Target("direct tools/call", host, "/mcp", {}, call, mcp.pid)
            aggregate = Target(
                "gateway /mcp", service_url, f"{API}/mcp?{org}", key, prefixed, service_pid
            )
            single = Target(
                "gateway /{id}/mcp",
                service_url,
                f"{API}/{seeded.connection_id}/mcp?{org}",
                key,
                call,
                service_pid,
            )
            sdk_only = Target(
                "SDK-only floor", bare.url.removesuffix("/mcp"), "/mcp", {}, call, bare.pid
            )
            targets = [direct, sdk_only, aggregate, single]
            check_answers(targets)
            print(f"  tools/call {TOOL}, concurrency {args.concurrency}:")
            report(interleaved(targets, args))

            listing = Target(
                f"tools/list ({args.list_connections} conns)",
                service_url,
                f"{API}/mcp?{org}&end_user_id={seeded.end_user_id}",
                {"X-API-Key": seeded.service_key},
                message(2, "tools/list"),
                service_pid,
            )
            check_answers([listing], expected_tools=8 * args.list_connections)  # warms the cache
            listed = measure(listing, args)
            print(f"  tools/list for an end user, from the cache, concurrency {args.concurrency}:")
            print_run(listed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per run")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved runs of each, summed")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds first")
    parser.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--client", choices=("raw", "httpx"), default="raw")
    parser.add_argument("--list-connections", type=int, default=10)
    parser.add_argument(
        "--upstream",
        choices=("stateful", "stateless"),
        default="stateful",
        help="the upstream server keeps sessions (Mcp-Session-Id) or answers each POST alone",
    )
    parser.add_argument(
        "--tool-delay-ms",
        type=float,
        default=0.0,
        help="echo answers after this long, as a tool doing real work would (default: at once)",
    )
    args = parser.parse_args()
    print(
        f"MCP gateway benchmark: concurrency {args.concurrency}, {args.rounds} interleaved "
        f"rounds of {args.warmup:g} s warm-up + {args.seconds:g} s measured, {args.client} "
        f"client, tool delay {args.tool_delay_ms:g} ms; {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.2f} at start"
    )
    for db in ("sqlite", "postgresql") if args.db == "both" else (args.db,):
        bench_backend("postgres" if db == "postgresql" else db, args)
    print(f"\nload average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
