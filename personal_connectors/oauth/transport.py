"""A lean HTTP/1.1 keep-alive transport for the OAuth calls to providers.

httpx's default transport (httpcore over anyio) costs about as much CPU per request as the rest
of a background refresh: a scan of every pooled connection with a ``poll`` on each idle one,
async-library detection and cancel scopes per request, anyio's stream layers. Token endpoints
need little of that: one request at a time per connection, small bodies read whole, no HTTP/2,
no upgrades. This transport keeps, per origin, a stack of idle connections on asyncio streams and
speaks HTTP/1.1 through h11 (httpcore's own parser), for httpx clients (Authlib's included).

It never resends a request: a connection that fails mid-request raises, and what to do about it
is the caller's decision (a refresh grant must not be sent twice behind its back). An idle
connection the server has closed is noticed by the event loop (EOF) and skipped before use.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import defaultdict
from typing import Any

import h11
import httpx

# The largest response read: token answers are a few kilobytes.
MAX_RESPONSE_BYTES = 1 << 20
_READ_CHUNK = 65536

Origin = tuple[str, str, int]


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.idle_since = time.monotonic()

    def usable(self, now: float, expiry: float) -> bool:
        """Still open, nothing unread (the server has not closed or spoken), not too old."""
        return (
            not self.writer.is_closing()
            and not self.reader.at_eof()
            and not getattr(self.reader, "_buffer", b"")  # unsolicited bytes: not ours to read
            and now - self.idle_since < expiry
        )

    def close(self) -> None:
        self.writer.close()


class KeepAliveTransport(httpx.AsyncBaseTransport):
    """HTTP/1.1 with keep-alive; at most ``max_idle`` idle connections kept per origin."""

    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext,
        max_idle: int = 64,
        keepalive_expiry: float = 30.0,
    ) -> None:
        self.ssl_context = ssl_context
        self.max_idle = max_idle
        self.keepalive_expiry = keepalive_expiry
        self._idle: defaultdict[Origin, list[_Connection]] = defaultdict(list)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeouts: dict[str, float | None] = request.extensions.get("timeout", {})
        url = request.url
        origin = (url.scheme, url.host, url.port or (443 if url.scheme == "https" else 80))
        body = await request.aread()
        connection = self._checkout(origin) or await self._connect(origin, timeouts.get("connect"))
        try:
            response, reusable = await self._exchange(
                connection, request, body, timeouts.get("read")
            )
        except BaseException:
            connection.close()
            raise
        if reusable and len(self._idle[origin]) < self.max_idle:
            connection.idle_since = time.monotonic()
            self._idle[origin].append(connection)
        else:
            connection.close()
        return response

    async def aclose(self) -> None:
        for connections in self._idle.values():
            for connection in connections:
                connection.close()
        self._idle.clear()

    def _checkout(self, origin: Origin) -> _Connection | None:
        idle = self._idle.get(origin)
        now = time.monotonic()
        while idle:
            connection = idle.pop()  # the most recently used: the least likely to be closed
            if connection.usable(now, self.keepalive_expiry):
                return connection
            connection.close()
        return None

    async def _connect(self, origin: Origin, seconds: float | None) -> _Connection:
        scheme, host, port = origin
        tls = self.ssl_context if scheme == "https" else None
        try:
            async with asyncio.timeout(seconds):
                reader, writer = await asyncio.open_connection(
                    host, port, ssl=tls, server_hostname=host if tls else None, limit=_READ_CHUNK
                )
        except TimeoutError:
            raise httpx.ConnectTimeout(f"connecting to {host}:{port} timed out") from None
        except (OSError, ssl.SSLError) as exc:
            raise httpx.ConnectError(f"{type(exc).__name__}: {exc}") from None
        return _Connection(reader, writer)

    async def _exchange(
        self,
        connection: _Connection,
        request: httpx.Request,
        body: bytes,
        seconds: float | None,
    ) -> tuple[httpx.Response, bool]:
        """Send ``request`` and read its whole response; whether the connection can be reused."""
        protocol = h11.Connection(h11.CLIENT)
        target = request.url.raw_path
        head = h11.Request(method=request.method, target=target, headers=list(request.headers.raw))
        try:
            connection.writer.write(
                protocol.send(head)
                + (protocol.send(h11.Data(data=body)) if body else b"")
                + protocol.send(h11.EndOfMessage())
            )
            async with asyncio.timeout(seconds):
                await connection.writer.drain()
                status, headers, content = await _read_response(connection.reader, protocol)
        except TimeoutError:
            raise httpx.ReadTimeout("the provider did not answer in time") from None
        except h11.ProtocolError as exc:
            raise httpx.RemoteProtocolError(str(exc)) from None
        except (OSError, ssl.SSLError, asyncio.IncompleteReadError) as exc:
            raise httpx.ReadError(f"{type(exc).__name__}: {exc}") from None
        reusable = protocol.our_state is h11.DONE and protocol.their_state is h11.DONE
        extensions: dict[str, Any] = {"http_version": b"HTTP/1.1"}
        stream = httpx.ByteStream(content)  # raw bytes: httpx decodes any content-encoding
        return httpx.Response(status, headers=headers, stream=stream, extensions=extensions), (
            reusable
        )


async def _read_response(
    reader: asyncio.StreamReader, protocol: h11.Connection
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    status = 0
    headers: list[tuple[bytes, bytes]] = []
    chunks: list[bytes] = []
    size = 0
    while True:
        event = protocol.next_event()
        if event is h11.NEED_DATA:
            data = await reader.read(_READ_CHUNK)
            protocol.receive_data(data)  # b"" is the end of the stream
        elif isinstance(event, h11.InformationalResponse):
            continue
        elif isinstance(event, h11.Response):
            status, headers = event.status_code, list(event.headers)
        elif isinstance(event, h11.Data):
            size += len(event.data)
            if size > MAX_RESPONSE_BYTES:
                raise h11.RemoteProtocolError("the response is too large")
            chunks.append(bytes(event.data))
        elif isinstance(event, h11.EndOfMessage):
            return status, headers, b"".join(chunks)
        elif isinstance(event, h11.ConnectionClosed):
            raise asyncio.IncompleteReadError(b"", None)
