"""A pass-through proxy between one service instance and a provider that can hold that instance's
requests before they reach the provider.

A process killed after the provider rotated a refresh token and before it stored the answer has
lost the grant, whatever it does (tests/tokens/test_kill9.py shows the service then says so:
needs_reauth, ``rotation_lost``). A test that kills an instance at a moment of its own choosing
uses the gate to make that moment one the service must survive without loss: ``hold()`` stops
forwarding the instance's new requests, ``wait_idle()`` waits until none is at the provider, and
after the kill ``release(drop=True)`` closes the held ones unsent (the provider never saw them;
the refresh they carried is one whose outcome the service does not know).
"""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler

import httpx

from tests.support import web
from tests.support.fault_proxy import HOP_BY_HOP
from tests.support.loopback import LoopbackServer, QuietHandler


class ProviderGate:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self._client = web.client(timeout=30)
        self._changed = threading.Condition()
        self._open = True
        self._epoch = 0  # bumped by release(drop=True): requests held before it are dropped
        self._in_flight = 0
        self.forwarded = 0
        self.dropped = 0
        gate = self

        class Handler(QuietHandler):
            def _handle(self) -> None:
                gate._serve(self)

            do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = _handle

        self._server = LoopbackServer(Handler)

    @property
    def url(self) -> str:
        return self._server.base_url

    def hold(self) -> None:
        with self._changed:
            self._open = False

    def wait_idle(self, timeout: float = 30.0) -> None:
        """Until no request of this gate is at the provider or on its way back."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while self._in_flight:
                left = deadline - time.monotonic()
                assert left > 0, "the provider did not answer the gate's requests in time"
                self._changed.wait(left)

    def release(self, *, drop: bool) -> None:
        with self._changed:
            if drop:
                self._epoch += 1
            self._open = True
            self._changed.notify_all()

    def close(self) -> None:
        self.release(drop=True)
        self._server.close()
        self._client.close()

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("content-length") or 0)
        body = handler.rfile.read(length) if length else b""
        with self._changed:
            epoch = self._epoch
            while not self._open and self._epoch == epoch:
                self._changed.wait()
            if self._epoch != epoch:
                self.dropped += 1
                handler.close_connection = True
                return
            self._in_flight += 1
        try:
            headers = {k: v for k, v in handler.headers.items() if k.lower() not in HOP_BY_HOP}
            try:
                response = self._client.request(
                    handler.command, self.upstream + handler.path, headers=headers, content=body
                )
            except httpx.HTTPError:
                handler.close_connection = True
                return
            try:
                handler.send_response(response.status_code)
                for name in ("content-type", "cache-control", "www-authenticate"):
                    if name in response.headers:
                        handler.send_header(name, response.headers[name])
                handler.send_header("Content-Length", str(len(response.content)))
                handler.end_headers()
                handler.wfile.write(response.content)
            except OSError:
                pass  # the instance is gone
        finally:
            with self._changed:
                self._in_flight -= 1
                self.forwarded += 1
                self._changed.notify_all()
