"""The outbound client's asyncio network backend: keep-alive connections are reused, a
connection the server closed is replaced, and a server that stops answering is a read
timeout."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from personal_connectors.config import Settings
from personal_connectors.outbound.client import create_client

ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok"


async def serve(answers_per_connection: int | None) -> tuple[asyncio.Server, list[int]]:
    """A server answering each connection's requests; after ``answers_per_connection`` it closes
    the connection (while the client holds it idle). Returns the requests counted per connection."""
    counts: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        counts.append(0)
        index = len(counts) - 1
        while answers_per_connection is None or counts[index] < answers_per_connection:
            try:
                await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:  # the client closed the connection
                break
            counts[index] += 1
            writer.write(ANSWER)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, counts


def client() -> httpx.AsyncClient:
    return create_client(Settings(outbound_allow_internal=True, _env_file=None))  # type: ignore[call-arg]


def url_of(server: asyncio.Server) -> str:
    host, port = server.sockets[0].getsockname()[:2]
    return f"http://{host}:{port}/"


def test_a_kept_alive_connection_is_used_again() -> None:
    async def run() -> list[int]:
        server, counts = await serve(None)
        async with server, client() as http:
            for _ in range(3):
                assert (await http.get(url_of(server))).text == "ok"
        return counts

    assert asyncio.run(run()) == [3]


def test_a_kept_alive_connection_the_server_closed_is_not_used_again() -> None:
    """The server closes its side after one answer, the client's pooled connection idle: the
    next request must see it closed and connect again (reused, it would fail)."""

    async def run() -> list[int]:
        closed = asyncio.Event()
        counts: list[int] = []

        async def once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            counts.append(1)
            await reader.readuntil(b"\r\n\r\n")
            writer.write(ANSWER)  # keep-alive promised, then closed
            await writer.drain()
            writer.close()
            await writer.wait_closed()
            closed.set()

        server = await asyncio.start_server(once, "127.0.0.1", 0)
        async with server, client() as http:
            for _ in range(3):
                closed.clear()
                assert (await http.get(url_of(server))).text == "ok"
                await closed.wait()
                for _ in range(3):  # loop turns (no timer) for the client's end to read the FIN
                    await asyncio.sleep(0)
        return counts

    assert asyncio.run(run()) == [1, 1, 1]


def test_a_server_that_never_answers_is_a_read_timeout() -> None:
    async def run() -> None:
        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read()  # never answers; the client gives up first

        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        async with server, client() as http:
            with pytest.raises(httpx.ReadTimeout):
                await http.get(url_of(server), timeout=0.3)

    asyncio.run(run())
