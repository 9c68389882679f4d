"""Per-request cost of the shared outbound client against a default ``httpx.AsyncClient``.

A small ASGI app in its own uvicorn process answers a token-sized JSON object; both clients send
the same form POSTs to it at the same concurrency, in alternating rounds, and the script prints
this process's CPU time per request (what a refresh pays for its HTTP) and the rate.

Run: .venv/bin/python bench/outbound.py [--requests 3000] [--concurrency 16] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from statistics import median

import httpx

from personal_connectors.config import Settings
from personal_connectors.outbound.client import create_client

APP = """
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    body = b'{"access_token":"at","token_type":"Bearer","expires_in":3600,"refresh_token":"rt"}'
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})
"""


@contextmanager
def server() -> Iterator[str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code = (
        f"{APP}\nimport uvicorn\nuvicorn.run(app, host='127.0.0.1', port={port}, log_level='error')"
    )
    process = subprocess.Popen([sys.executable, "-c", code])
    url = f"http://127.0.0.1:{port}/token"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.post(url, timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


async def drive(client: httpx.AsyncClient, url: str, requests: int, concurrency: int) -> None:
    async def worker(count: int) -> None:
        for _ in range(count):
            response = await client.post(
                url,
                content=b"grant_type=refresh_token&refresh_token=rt",
                headers={"Content-Type": "application/x-www-form-urlencoded"},
                auth=("client", "secret"),
            )
            assert response.status_code == 200

    async with client:
        await worker(concurrency)  # warm the pool
        await asyncio.gather(*(worker(requests // concurrency) for _ in range(concurrency)))


def measure(
    make: Callable[[], httpx.AsyncClient], url: str, args: argparse.Namespace
) -> tuple[float, float]:
    """(µs of CPU per request, requests per second)."""
    cpu, wall = time.process_time(), time.perf_counter()
    asyncio.run(drive(make(), url, args.requests, args.concurrency))
    sent = args.requests // args.concurrency * args.concurrency
    return (time.process_time() - cpu) / sent * 1e6, sent / (time.perf_counter() - wall)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    settings = Settings(_env_file=None, outbound_allow_internal=True)  # type: ignore[call-arg]
    clients: dict[str, Callable[[], httpx.AsyncClient]] = {
        "default httpx.AsyncClient": lambda: httpx.AsyncClient(
            limits=httpx.Limits(max_connections=128, max_keepalive_connections=64)
        ),
        "shared outbound client": lambda: create_client(settings),
    }
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in clients}
    print(
        f"{args.requests} requests at concurrency {args.concurrency}, {args.rounds} rounds; "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    with server() as url:
        for number in range(args.rounds):
            order = list(clients) if number % 2 == 0 else list(reversed(clients))
            for name in order:
                results[name].append(measure(clients[name], url, args))
    for name, samples in results.items():
        cpu = median(sample[0] for sample in samples)
        rate = median(sample[1] for sample in samples)
        shown = ", ".join(f"{sample[0]:.0f}" for sample in samples)
        print(f"  {name:<27} {cpu:6.0f} µs CPU/request (rounds: {shown}), {rate:6.0f} req/s")
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
