"""How ``connectors serve`` runs the app under uvicorn: its timeouts and limits.

uvicorn bounds idle keep-alive connections (``timeout_keep_alive``) and the connections and
requests one worker holds (``limit_concurrency``, answered 503), but it has no deadline for
reading a request's headers — a connection that sends nothing, or a byte now and then, stays
open for good — and its httptools parser takes headers of any size. ``HeaderLimitedProtocol``
adds both on top of uvicorn's httptools protocol, through the parser callbacks that protocol
implements: a timer from the connection's opening (and from the first byte of each next request)
to the end of the headers, after which the connection is closed, and a byte count over the
request line and headers, answered 431 and closed.
"""

from __future__ import annotations

import asyncio
import json
from functools import cache
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from personal_connectors.config import Settings, get_settings
from personal_connectors.exceptions import APIError
from personal_connectors.http.context import request_id_of
from personal_connectors.http.envelope import REQUEST_ID_HEADER, envelope


class HeadersTooLarge(APIError):
    """The request line and headers are over ``CONNECTORS_HTTP_MAX_HEADER_BYTES``."""

    status, code, type = 431, "REQUEST_HEADERS_TOO_LARGE", "client_error"
    message = "The request's headers are too large."


def _too_large_response() -> bytes:
    """A 431 in the envelope of SPEC §2, written before any request exists, then closed."""
    trace_id = request_id_of({})  # a fresh id: no request was read
    body = json.dumps(envelope(HeadersTooLarge(), trace_id)).encode()
    head = (
        "HTTP/1.1 431 Request Header Fields Too Large\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        f"{REQUEST_ID_HEADER.lower()}: {trace_id}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


@cache
def _limits() -> tuple[float, int]:
    # Read once per worker process, from the same environment ``serve`` was given.
    settings = get_settings()
    return settings.http_header_timeout_seconds, settings.http_max_header_bytes


class HeaderLimitedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline and a size cap on each request's headers."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timeout, self._max_header_bytes = _limits()
        self._header_deadline: asyncio.TimerHandle | None = None
        self._header_bytes = 0
        self._too_large = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_bytes = 0
        if self._header_deadline is None:
            self._arm()

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)  # ": " and CRLF
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def send_400_response(self, msg: str) -> None:
        if not self._too_large:
            super().send_400_response(msg)
            return
        self.transport.write(_too_large_response())
        self.transport.close()

    def _count(self, size: int) -> None:
        self._header_bytes += size
        if self._header_bytes > self._max_header_bytes:
            self._too_large = True
            raise HeadersTooLarge()

    def _arm(self) -> None:
        self._disarm()
        self._header_deadline = self.loop.call_later(self._header_timeout, self._headers_late)

    def _disarm(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_late(self) -> None:
        self._header_deadline = None
        if not self.transport.is_closing():
            self.transport.close()


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """The keyword arguments ``connectors serve`` gives ``uvicorn.run`` for these limits."""
    return {
        "http": HeaderLimitedProtocol,
        "timeout_keep_alive": settings.http_keep_alive_seconds,
        "limit_concurrency": settings.http_max_concurrency,
    }
