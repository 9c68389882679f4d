"""The shared client's transport admits at most a pool's connections' worth of requests to one
origin at a time: the rest wait their turn (at most the pool timeout), and a turn comes back
when a response is closed, whether it was read, streamed or failed."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from personal_connectors.outbound.client import LIMITS
from personal_connectors.outbound.guard import OutboundPolicy
from personal_connectors.outbound.transport import GuardedTransport

ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok"


async def held_server(release: asyncio.Event) -> tuple[asyncio.Server, list[int]]:
    """A server answering each request once ``release`` is set; counts requests in progress."""
    inside = [0, 0]  # now, most at once

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                break
            inside[0] += 1
            inside[1] = max(inside)
            await release.wait()
            inside[0] -= 1
            writer.write(ANSWER)
            await writer.drain()
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0), inside


async def requests_inside(inside: list[int], count: int) -> None:
    """Until ``count`` requests are at the held server, however loaded the machine is."""
    async with asyncio.timeout(10):
        while inside[0] < count:
            await asyncio.sleep(0.01)


def client(connections: int) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    transport = GuardedTransport(
        OutboundPolicy(allow_internal=True),
        ssl_context=httpx.create_ssl_context(),
        limits=limits,
    )
    return httpx.AsyncClient(transport=transport)


def url_of(server: asyncio.Server) -> str:
    host, port = server.sockets[0].getsockname()[:2]
    return f"http://{host}:{port}/"


def test_requests_beyond_the_connections_wait_their_turn_and_all_are_answered() -> None:
    async def run() -> tuple[list[str], int]:
        release = asyncio.Event()
        server, inside = await held_server(release)
        async with server, client(3) as http:
            calls = [asyncio.create_task(http.get(url_of(server))) for _ in range(10)]
            await requests_inside(inside, 3)
            await asyncio.sleep(0.2)  # time for a fourth to get in, were it let through
            release.set()
            answers = [response.text for response in await asyncio.gather(*calls)]
        return answers, inside[1]

    answers, most_at_once = asyncio.run(run())
    assert answers == ["ok"] * 10
    assert most_at_once == 3


def test_a_request_waiting_longer_than_the_pool_timeout_is_a_pool_timeout() -> None:
    async def run() -> None:
        release = asyncio.Event()
        server, inside = await held_server(release)
        async with server, client(1) as http:
            first = asyncio.create_task(http.get(url_of(server)))
            await requests_inside(inside, 1)
            with pytest.raises(httpx.PoolTimeout):
                await http.get(url_of(server), timeout=httpx.Timeout(5.0, pool=0.2))
            release.set()
            assert (await first).text == "ok"

    asyncio.run(run())


def test_a_turn_comes_back_when_a_streamed_response_is_closed_or_a_request_fails() -> None:
    async def run() -> list[str]:
        release = asyncio.Event()
        release.set()
        server, _ = await held_server(release)
        answers = []
        async with server, client(1) as http:
            for _ in range(3):
                async with http.stream("GET", url_of(server)) as response:
                    answers.append((await response.aread()).decode())
            for _ in range(2):  # refused (nothing listens on port 1), not a wait for a turn
                with pytest.raises(httpx.ConnectError):
                    await http.get("http://127.0.0.1:1/", timeout=httpx.Timeout(2.0, pool=0.2))
            for _ in range(2):  # the same origin's turns still all there
                answers.append((await http.get(url_of(server), timeout=2.0)).text)
        return answers

    assert asyncio.run(run()) == ["ok"] * 5


async def counting_server() -> tuple[asyncio.Server, dict[str, int]]:
    """A server answering at once; counts the connections it saw opened and closed."""
    seen = {"opened": 0, "closed": 0}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen["opened"] += 1
        while True:
            try:
                await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                break
            writer.write(ANSWER)
            await writer.drain()
        seen["closed"] += 1
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0), seen


def test_origins_no_request_uses_are_closed_and_forgotten_past_the_limit() -> None:
    """Destinations come and go: past ``max_origins`` the least recently used idle ones are
    closed with their kept-alive connections; the one used most recently is kept."""

    async def run() -> list[dict[str, int]]:
        servers = [await counting_server() for _ in range(3)]
        transport = GuardedTransport(
            OutboundPolicy(allow_internal=True),
            ssl_context=httpx.create_ssl_context(),
            limits=httpx.Limits(max_connections=2),
            max_origins=2,
        )
        async with httpx.AsyncClient(transport=transport) as http:
            first, second, third = (url_of(server) for server, _ in servers)
            for url in (first, second, first, third):  # the third forgets the second, not the first
                assert (await http.get(url)).text == "ok"
            assert (await http.get(first)).text == "ok"  # still on its kept-alive connection
            await asyncio.sleep(0.1)  # the servers see the closed connection
            counts = [dict(seen) for _, seen in servers]
        for server, _ in servers:
            server.close()
        return counts

    first, second, third = asyncio.run(run())
    assert second == {"opened": 1, "closed": 1}
    assert first == {"opened": 1, "closed": 0}
    assert third == {"opened": 1, "closed": 0}


def test_a_connection_idle_for_the_keepalive_expiry_is_closed_not_reused() -> None:
    """The shared client's connections are reused by calls back to back, and closed once idle
    for ``keepalive_expiry``, before a server's common 5 s (Node, uvicorn) closes them under a
    request sent that instant."""

    expiry = LIMITS.keepalive_expiry
    assert expiry is not None and expiry < 5

    async def run() -> dict[str, int]:
        server, seen = await counting_server()
        transport = GuardedTransport(
            OutboundPolicy(allow_internal=True),
            ssl_context=httpx.create_ssl_context(),
            limits=LIMITS,
        )
        async with server, httpx.AsyncClient(transport=transport) as http:
            for _ in range(3):  # one after the other: one connection
                assert (await http.get(url_of(server))).text == "ok"
            assert seen == {"opened": 1, "closed": 0}
            await asyncio.sleep(expiry + 0.2)
            assert (await http.get(url_of(server))).text == "ok"
            await asyncio.sleep(0.1)  # the server sees the expired connection closed
            return dict(seen)

    assert asyncio.run(run()) == {"opened": 2, "closed": 1}
