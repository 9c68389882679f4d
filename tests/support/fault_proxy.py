"""A loopback HTTP proxy that stands between the service and a provider and misbehaves on
command: passes through, answers an error status, garbage, drops the connection, stalls, or
resets the connection after the provider processed the request (a rotated refresh token that
never arrives).

It also counts requests per path, so a test can see how many calls reached the proxy, and how
many the provider answered (``forwarded``): a ``delay-after`` stall holds an answer the provider
already gave, the moment a crash loses a rotated refresh token.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler

from tests.support import web
from tests.support.loopback import LoopbackServer, QuietHandler

HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "content-length",
    "host",
    "content-encoding",
}


class FaultProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.mode = "pass"
        self._left: int | None = None  # requests until the mode reverts to "pass"
        self.hits: Counter[str] = Counter()
        self.answered: Counter[str] = Counter()
        self._lock = threading.Lock()
        proxy = self

        class Handler(QuietHandler):
            def _handle(self) -> None:
                proxy._serve(self)

            do_GET = do_POST = do_DELETE = _handle

        self._server = LoopbackServer(Handler)

    @property
    def url(self) -> str:
        return self._server.base_url

    def set_mode(self, mode: str, *, times: int | None = None) -> None:
        """``pass`` | ``status:<code>`` | ``garbage`` | ``drop`` | ``delay:<seconds>`` (before
        forwarding) | ``delay-after:<seconds>`` (after the provider answered, before replying) |
        ``reset-after`` (the provider answered; the client gets a TCP reset instead).
        ``times``: for that many requests, then ``pass`` again."""
        with self._lock:
            self.mode = mode
            self._left = times

    def count(self, path: str) -> int:
        with self._lock:
            return self.hits[path]

    def forwarded(self, path: str) -> int:
        """How many requests to ``path`` the provider has answered."""
        with self._lock:
            return self.answered[path]

    def close(self) -> None:
        self._server.close()

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        path = handler.path.split("?", 1)[0]
        with self._lock:
            self.hits[path] += 1
            mode = self.mode
            if self._left is not None:
                self._left -= 1
                if self._left <= 0:
                    self.mode, self._left = "pass", None
        length = int(handler.headers.get("content-length") or 0)
        body = handler.rfile.read(length) if length else b""
        if mode.startswith("status:"):
            return self._reply(handler, int(mode.split(":")[1]), b"upstream trouble", "text/plain")
        if mode == "garbage":
            return self._reply(handler, 200, b"<html>definitely not json", "text/html")
        if mode == "drop":
            handler.close_connection = True
            handler.connection.close()
            return None
        if mode.startswith("delay:"):
            time.sleep(float(mode.split(":")[1]))
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in HOP_BY_HOP}
        response = web.request(
            handler.command, self.upstream + handler.path, headers=headers, content=body, timeout=30
        )
        with self._lock:
            self.answered[path] += 1
        if mode.startswith("delay-after:"):
            time.sleep(float(mode.split(":")[1]))
        if mode == "reset-after":
            return self._reset(handler)
        return self._reply(
            handler,
            response.status_code,
            response.content,
            response.headers.get("content-type", ""),
        )

    @staticmethod
    def _reset(handler: BaseHTTPRequestHandler) -> None:
        """Close with SO_LINGER 0: the client reads a connection reset, not an answer."""
        handler.close_connection = True
        handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        handler.connection.close()

    @staticmethod
    def _reply(
        handler: BaseHTTPRequestHandler, status: int, content: bytes, content_type: str
    ) -> None:
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", content_type)
            handler.send_header("Content-Length", str(len(content)))
            handler.end_headers()
            handler.wfile.write(content)
        except OSError:
            pass  # the client gave up (timeout): nothing to tell it
