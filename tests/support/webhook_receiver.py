"""A loopback webhook receiver: records every POST (path, headers, body) and answers 204, or
500 for as many requests as it is told to fail first, so tests can see retries."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from typing import Any

from tests.support.loopback import LoopbackServer, QuietHandler


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    answered: int
    at: float

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]


class WebhookReceiver:
    def __init__(self) -> None:
        self.received: list[Received] = []
        self._failures_left = 0
        self._always_fail = False
        self._lock = threading.Lock()
        receiver = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                status = receiver._answer()
                receiver._record(
                    Received(
                        self.path,
                        {k.lower(): v for k, v in self.headers.items()},
                        body,
                        status,
                        time.monotonic(),
                    )
                )
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self._server = LoopbackServer(Handler)

    def url(self, path: str = "/hook") -> str:
        return self._server.base_url + path

    def fail_next(self, count: int) -> None:
        """Answer 500 to the next ``count`` requests."""
        with self._lock:
            self._failures_left = count

    def fail_always(self, value: bool = True) -> None:
        with self._lock:
            self._always_fail = value

    def _answer(self) -> int:
        with self._lock:
            if self._always_fail:
                return 500
            if self._failures_left > 0:
                self._failures_left -= 1
                return 500
            return 204

    def _record(self, item: Received) -> None:
        with self._lock:
            self.received.append(item)

    def requests(self, path: str | None = None) -> list[Received]:
        with self._lock:
            return [r for r in self.received if path is None or r.path == path]

    def delivered(self, path: str | None = None) -> list[Received]:
        """The requests answered 2xx."""
        return [r for r in self.requests(path) if 200 <= r.answered < 300]

    def wait_for(
        self, condition: Any, timeout: float = 20.0, path: str | None = None
    ) -> list[Received]:
        """Poll until ``condition(requests)`` holds, with a deadline; returns the requests."""
        deadline = time.monotonic() + timeout
        while True:
            seen = self.requests(path)
            if condition(seen):
                return seen
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"webhook receiver: condition not met in {timeout}s; got "
                    f"{[(r.path, r.answered, r.body[:200]) for r in seen]}"
                )
            time.sleep(0.05)

    def close(self) -> None:
        self._server.close()
