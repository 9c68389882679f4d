"""Threaded servers on loopback ports, for the small servers the tests run in-process: plain HTTP
(the fault proxy, the fake provider, the webhook receiver) and ASGI under uvicorn (MCP servers,
a provider's API, token minting servers); one place that starts, names and stops them."""

from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import uvicorn


class QuietHandler(BaseHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:  # keep test output (and any token) quiet
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # a webhook worker or a load test sends a whole batch at once


class LoopbackServer:
    """Serves ``handler`` on 127.0.0.1 in a daemon thread until ``close``."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self._server = _Server(("127.0.0.1", 0), handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class ThreadedUvicorn:
    """Serves an ASGI app with uvicorn on 127.0.0.1 in a daemon thread, for the tests' in-process
    ASGI servers (MCP servers, a provider's API, token minting servers): ``start`` returns once
    it listens, ``stop`` ends it. ``port``, or a socket already bound (``sock``)."""

    def __init__(
        self,
        app: Any,
        *,
        port: int | None = None,
        sock: socket.socket | None = None,
        log_level: str = "warning",
        lifespan: str = "auto",
    ) -> None:
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port or 0,
            log_level=log_level,
            lifespan=lifespan,
            interface="asgi3",
        )
        self._server = uvicorn.Server(config)
        sockets = [sock] if sock is not None else None
        self._thread = threading.Thread(
            target=lambda: self._server.run(sockets=sockets), daemon=True
        )

    def start(self, timeout: float = 30.0) -> None:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("a test ASGI server did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        if self._thread.is_alive():
            self._server.should_exit = True
            self._thread.join(timeout=10)
