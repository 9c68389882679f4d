"""The HTTP server's own limits (http/server.py): a client that is slow to send its headers, an idle
keep-alive connection, oversized headers and too many connections are all cut off."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.support import web
from tests.support.envelope import is_envelope
from tests.support.oidc import free_port
from tests.support.service import ServiceProcess

HEADER_TIMEOUT_S = 3.0
KEEP_ALIVE_S = 1
MAX_HEADER_BYTES = 8192
MAX_CONCURRENCY = 4


@pytest.fixture(scope="module")
def limited(
    service: ServiceProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    """A second server on the same database with small limits, so each is quick to reach."""
    env = {
        **service.env,
        "CONNECTORS_HTTP_HEADER_TIMEOUT_SECONDS": str(HEADER_TIMEOUT_S),
        "CONNECTORS_HTTP_KEEP_ALIVE_SECONDS": str(KEEP_ALIVE_S),
        "CONNECTORS_HTTP_MAX_HEADER_BYTES": str(MAX_HEADER_BYTES),
        "CONNECTORS_HTTP_MAX_CONCURRENCY": str(MAX_CONCURRENCY),
    }
    log = tmp_path_factory.mktemp("limited") / "service.log"
    process = ServiceProcess(free_port(), env, log).start()
    yield process
    process.stop()


def open_socket(server: ServiceProcess) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=15)


def seconds_until_closed(sock: socket.socket) -> float:
    """Read until the server closes the connection; how long that took."""
    started = time.monotonic()
    while sock.recv(65536):
        pass
    return time.monotonic() - started


def read_response(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def test_a_silent_connection_is_closed_at_the_header_deadline(limited: ServiceProcess) -> None:
    with open_socket(limited) as silent:
        assert seconds_until_closed(silent) < HEADER_TIMEOUT_S + 2


def test_headers_that_never_end_are_cut_off_at_the_deadline(limited: ServiceProcess) -> None:
    with open_socket(limited) as slow:
        slow.sendall(b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: still")
        assert seconds_until_closed(slow) < HEADER_TIMEOUT_S + 2


def test_an_idle_keep_alive_connection_is_closed_after_its_timeout(
    limited: ServiceProcess,
) -> None:
    with open_socket(limited) as client:
        client.sendall(b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        first = client.recv(65536)
        assert first.startswith(b"HTTP/1.1 200"), first
        assert seconds_until_closed(client) < KEEP_ALIVE_S + 1.5


def test_headers_over_the_cap_are_refused_with_431_in_the_envelope(
    limited: ServiceProcess,
) -> None:
    fits = web.get(f"{limited.base_url}/livez", headers={"X-Fits": "a" * 4096})
    assert fits.status_code == 200
    with open_socket(limited) as client:
        filler = b"a" * (MAX_HEADER_BYTES * 2)
        client.sendall(b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + filler + b"\r\n\r\n")
        head, _, body = read_response(client).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 431 "), head
    answer = httpx.Response(431, content=body).json()
    assert is_envelope(answer, 431) and answer["error"]["code"] == "REQUEST_HEADERS_TOO_LARGE"
    assert f"x-request-id: {answer['error']['trace_id']}".encode() in head


def test_a_two_megabyte_header_is_never_served(limited: ServiceProcess) -> None:
    try:
        response = web.get(f"{limited.base_url}/livez", headers={"X-Huge": "a" * 2_000_000})
    except httpx.TransportError:
        return  # refused mid-send: the server closed before the client finished writing
    assert response.status_code == 431


def test_connections_beyond_the_concurrency_limit_are_answered_503(
    limited: ServiceProcess,
) -> None:
    idle = [open_socket(limited) for _ in range(MAX_CONCURRENCY - 1)]
    try:
        for sock in idle:  # each is a connection the server holds, a request under way
            sock.sendall(b"GET /livez HTTP/1.1\r\n")
        assert web.get(f"{limited.base_url}/livez").status_code == 503
    finally:
        for sock in idle:
            sock.close()
    deadline = time.monotonic() + 10
    while web.get(f"{limited.base_url}/livez").status_code != 200:
        assert time.monotonic() < deadline, "the limit was not released"
