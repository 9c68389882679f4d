"""Per-request context: a trace id on every response, ``Cache-Control: no-store`` on every API
answer, an access log without query strings, and a cap on body size enforced while the body
streams in (not only from Content-Length)."""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Sequence
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from personal_connectors.config import API_PREFIX
from personal_connectors.exceptions import PayloadTooLarge, ValidationFailed
from personal_connectors.http.envelope import REQUEST_ID_HEADER, error_response

_STATE_KEY = "request_id"
# Headers a route's dependencies decided for its answer, whatever it turns out to be (the rate
# limit's, http.dependencies): added to the response here, as errors are rendered elsewhere.
_HEADERS_KEY = "response_headers"
# API answers carry tokens, keys shown once, webhook secrets and connect links: no cache (the
# browser's, a proxy's) may keep any of them, so none may keep any API answer.
_NO_STORE = (b"cache-control", b"no-store")

access_logger = logging.getLogger("personal_connectors.access")


def request_id_of(scope: Scope) -> str:
    state: dict[str, Any] = scope.setdefault("state", {})
    if _STATE_KEY not in state:
        state[_STATE_KEY] = f"req_{uuid.uuid4().hex}"
    return str(state[_STATE_KEY])


def add_response_headers(scope: Scope, headers: list[tuple[bytes, bytes]]) -> None:
    """Send ``headers`` (lower-case names) with the request's answer, success or error."""
    scope.setdefault("state", {}).setdefault(_HEADERS_KEY, []).extend(headers)


class RequestContextMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        body_limits: Sequence[tuple[re.Pattern[str], int]] = (),
    ) -> None:
        """``body_limits``: other caps for the paths a pattern matches (the proxy's)."""
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.body_limits = tuple(body_limits)

    def _limit(self, path: str) -> int:
        for pattern, limit in self.body_limits:
            if pattern.match(path):
                return limit
        return self.max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_of(scope)
        state = scope["state"]
        header = (REQUEST_ID_HEADER.lower().encode(), request_id.encode())
        added = [header, _NO_STORE] if scope["path"].startswith(API_PREFIX) else [header]
        replaced = {name for name, _ in added}
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [h for h in message.get("headers", []) if h[0].lower() not in replaced]
                message = {**message, "headers": [*headers, *added, *state.get(_HEADERS_KEY, ())]}
            await send(message)

        declared = _content_length(scope)
        limit = self._limit(scope["path"]) if self.body_limits else self.max_body_bytes
        if declared is not None and declared > limit:
            # Refuse before reading a byte of it.
            response = error_response(
                PayloadTooLarge(f"The body exceeds {limit} bytes."), request_id
            )
            await response(scope, receive, send_with_id)
            access_logger.info("%s %s 413 %s", scope.get("method"), scope.get("path"), request_id)
            return
        if b"%00" in scope.get("query_string", b"") or "\x00" in scope.get("path", ""):
            response = error_response(
                ValidationFailed("The request URL must not contain NUL characters."), request_id
            )
            await response(scope, receive, send_with_id)
            return
        receive = _bounded_receive(receive, limit)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            access_logger.info(
                "%s %s %s %.1fms %s",
                scope.get("method"),
                scope.get("path"),
                status,
                (time.perf_counter() - started) * 1000,
                request_id,
            )


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _bounded_receive(receive: Receive, limit: int) -> Receive:
    seen = 0

    async def bounded() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise PayloadTooLarge(f"The body exceeds {limit} bytes.")
        return message

    return bounded
