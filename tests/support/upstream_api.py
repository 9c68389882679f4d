"""A provider's API for the proxy tests: an ASGI app under uvicorn on a loopback port, in a
thread of the test process (so a test can steer it and read what it saw).

Under ``/api``:
- ``echo/…`` (any method): what arrived — method, raw path and query, headers, the body's
  length, hash and (when short) text — answered with headers the proxy must pass, rename or
  drop (``X-Request-ID``, ``x-ratelimit-*``, ``Set-Cookie``, ``Cache-Control``, hop-by-hop);
- ``download/{n}``: n bytes of ``PATTERN`` generated as they are sent (never held whole), the
  second half only after the test ``release``s it;
- ``upload``: reads the body as it comes (``received`` counts it), answers its length and hash;
- ``flaky/{key}?fail=N&status=S&retry_after=R``: S (with ``Retry-After: R``) N times, then 200;
- ``redirect?to=URL``: a 302 there (by default a public address); ``slow?seconds=S``: answers after S seconds;
  ``status/{code}``: that status; ``gzip``: a gzip-encoded body; ``short``: an answer
  broken off before the length it declares.

A token in ``stale`` (as bearer or in ``X-Upstream-Token``) is answered 401; with
``hold_stale = N`` those answers wait until N such requests have arrived, so concurrent calls
all see their 401 before any refresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import hashlib
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from tests.support import outputs
from tests.support.loopback import ThreadedUvicorn
from tests.support.oidc import free_port

PATTERN = bytes(range(256)) * 4096  # 1 MiB of a known pattern
CHUNK = 64 * 1024
HOLD_SECONDS = 20.0  # the longest the server waits for the test's signal


def pattern_bytes(size: int) -> bytes:
    whole, rest = divmod(size, len(PATTERN))
    return PATTERN * whole + PATTERN[:rest]


def pattern_chunks(size: int, chunk: int = CHUNK) -> Iterator[bytes]:
    """``pattern_bytes(size)`` generated a chunk at a time, never held whole."""
    for start in range(0, size, chunk):
        yield _pattern_slice(start, chunk, size)


def _pattern_slice(start: int, length: int, size: int) -> bytes:
    """Bytes ``start`` to ``start + length`` (at most ``size``) of the repeated pattern."""
    end = min(start + length, size)
    offset = start % len(PATTERN)
    if offset + (end - start) <= len(PATTERN):
        return PATTERN[offset : offset + end - start]
    return pattern_bytes(offset + end - start)[offset:]


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    query: str
    headers: list[tuple[str, str]]
    body_length: int

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k == name.lower()), None)

    @property
    def token(self) -> str | None:
        value = self.header("authorization") or ""
        if value.startswith("Bearer "):
            return value[7:]
        upstream = self.header("x-upstream-token") or ""
        return upstream.removeprefix("Token ") or None


@dataclass
class UpstreamApi:
    port: int = field(default_factory=free_port)
    seen: list[Seen] = field(default_factory=list)
    stale: set[str] = field(default_factory=set)
    hold_stale: int = 0
    stale_hits: int = 0
    attempts: Counter[str] = field(default_factory=Counter)
    received: int = 0  # bytes of the upload in progress
    released: threading.Event = field(default_factory=threading.Event)
    waited_out: bool = False  # a hold ended by HOLD_SECONDS rather than by the test
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadedUvicorn | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> UpstreamApi:
        self._server = ThreadedUvicorn(self.app, port=self.port, lifespan="off")
        self._server.start()
        return self

    def close(self) -> None:
        if self._server is not None:
            self._server.stop()

    def reset(self) -> None:
        with self._lock:
            self.seen.clear()
            self.stale.clear()
            self.hold_stale = self.stale_hits = self.received = 0
            self.attempts.clear()
            self.released.clear()
            self.waited_out = False

    def release(self) -> None:
        self.released.set()

    async def _wait(self, condition: Any) -> None:
        deadline = time.monotonic() + HOLD_SECONDS
        while not condition():
            if time.monotonic() > deadline:
                self.waited_out = True
                return
            await asyncio.sleep(0.01)

    # --- the ASGI app ----------------------------------------------------------------------

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        path = scope["raw_path"].decode("latin-1")
        query = scope["query_string"].decode("latin-1")
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
        route = path.removeprefix("/api/")

        if route == "upload":
            digest, length = hashlib.sha256(), 0
            while True:
                message = await receive()
                chunk = message.get("body", b"")
                digest.update(chunk)
                length += len(chunk)
                self.received = length
                if not message.get("more_body"):
                    break
            self._record(scope, path, query, headers, length)
            await self._json(send, 200, {"length": length, "sha256": digest.hexdigest()})
            return

        body = await self._read(receive)
        seen = self._record(scope, path, query, headers, len(body))
        for name, value in headers:
            if name in ("authorization", "x-upstream-token") or name == "x-api-key":
                outputs.RECORD.add_secret(value.split(" ")[-1], "access_token")
        if seen.token in self.stale:
            with self._lock:
                self.stale_hits += 1
            await self._wait(lambda: self.stale_hits >= self.hold_stale)
            extra = [(b"www-authenticate", b'Bearer error="invalid_token"')]
            await self._json(send, 401, {"message": "Bad credentials"}, extra)
            return

        if route.startswith("echo"):
            await self._echo(send, scope, path, query, headers, body)
        elif route.startswith("download/"):
            await self._download(send, int(route.split("/")[1]))
        elif route.startswith("flaky/"):
            await self._flaky(send, route.split("/")[1], parse_qs(query))
        elif route == "redirect":
            # ``?to=URL``: where to (this server's own address, for a redirect to an internal
            # one); else a public address.
            target = parse_qs(query).get("to", ["https://elsewhere.example/landing"])[0]
            extra = [(b"location", target.encode())]
            await self._json(send, 302, {"moved": True}, extra)
        elif route == "slow":
            await asyncio.sleep(float(parse_qs(query)["seconds"][0]))
            await self._json(send, 200, {"slow": True})
        elif route == "short":
            # Declares more than it sends, then the connection ends (uvicorn closes it): a
            # provider breaking off a small answer.
            headers = [(b"content-type", b"application/json"), (b"content-length", b"100")]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            with contextlib.suppress(RuntimeError):  # uvicorn: shorter than Content-Length
                await send({"type": "http.response.body", "body": b'{"cut": '})
        elif route.startswith("status/"):
            await self._json(send, int(route.split("/")[1]), {"from": "upstream"})
        elif route == "gzip":
            packed = gzip.compress(b'{"compressed": true}')
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-encoding", b"gzip"),
                        (b"content-length", str(len(packed)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": packed})
        else:
            await self._json(send, 404, {"message": "Not Found"})

    def _record(
        self, scope: dict[str, Any], path: str, query: str, headers: list[tuple[str, str]], n: int
    ) -> Seen:
        seen = Seen(scope["method"], path, query, headers, n)
        with self._lock:
            self.seen.append(seen)
        return seen

    async def _read(self, receive: Any) -> bytes:
        parts = []
        while True:
            message = await receive()
            parts.append(message.get("body", b""))
            if not message.get("more_body"):
                return b"".join(parts)

    async def _json(
        self,
        send: Any,
        status: int,
        payload: Any,
        extra: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        body = json.dumps(payload).encode()
        headers = [(b"content-type", b"application/json"), *(extra or [])]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _echo(
        self,
        send: Any,
        scope: dict[str, Any],
        path: str,
        query: str,
        headers: list[tuple[str, str]],
        body: bytes,
    ) -> None:
        payload = {
            "method": scope["method"],
            "path": path,
            "query": query,
            "headers": headers,
            "body_length": len(body),
            "body_sha256": hashlib.sha256(body).hexdigest(),
            "body": body.decode("utf-8", "replace") if len(body) <= 4096 else None,
        }
        extra = [
            (b"x-request-id", b"upstream-request-id"),
            (b"x-ratelimit-remaining", b"41"),
            (b"set-cookie", b"session=upstream-cookie; Path=/"),
            (b"cache-control", b"public, max-age=60"),
            (b"proxy-authenticate", b"Basic"),
            (b"connection", b"x-hop-only"),
            (b"x-hop-only", b"1"),
            (b"x-connectors-proxy", b"spoofed"),
            (b"link", b"<https://api.example/next>; rel=next"),
            (b"link", b"<https://api.example/last>; rel=last"),
            (b"x-upstream", b"yes"),
        ]
        await self._json(send, 200, payload, extra)

    async def _download(self, send: Any, size: int) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/octet-stream")],
            }
        )
        half = size // 2
        for start in range(0, size, CHUNK):
            if start >= half and not self.released.is_set():
                await self._wait(self.released.is_set)
            chunk = _pattern_slice(start, CHUNK, size)
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    async def _flaky(self, send: Any, key: str, query: dict[str, list[str]]) -> None:
        with self._lock:
            self.attempts[key] += 1
            attempt = self.attempts[key]
        if attempt <= int(query["fail"][0]):
            extra = []
            if "retry_after" in query:
                extra.append((b"retry-after", query["retry_after"][0].encode()))
            await self._json(send, int(query["status"][0]), {"attempt": attempt}, extra)
        else:
            await self._json(send, 200, {"attempt": attempt})


def proxy_entries(upstream: UpstreamApi, base: dict[str, object]) -> dict[str, dict[str, object]]:
    """Providers-file entries for the proxy tests: ``base`` (the local OpenID provider's entry)
    with an API at ``upstream``, credentials sent four ways; and the OpenID provider itself as
    the API (its userinfo at ``/me``)."""
    api = f"{upstream.url}/api"
    # The issuer, whose discovery document is at ``{issuer}/.well-known/openid-configuration``.
    issuer = str(base["discovery_url"]).removesuffix(DISCOVERY_SUFFIX)
    return {
        PROXY_USERINFO_KEY: {**base, "display_name": "Proxy Userinfo OIDC", "api_base_url": issuer},
        PROXY_KEY: {**base, "display_name": "Proxy OIDC", "api_base_url": api},
        PROXY_HEADER_KEY: {
            **base,
            "display_name": "Proxy Header OIDC",
            "api_base_url": api,
            "api_auth": {
                "headers": {"X-Upstream-Token": "Token {access_token}"},
                "query": {"access_key": "{access_token}"},
            },
        },
        PROXY_META_KEY: {
            **base,
            "display_name": "Proxy Metadata OIDC",
            "token_metadata": {"instance_url": "instance_url"},
            "api_base_url": "{instance_url}/api",
            "metadata_patterns": {"instance_url": r"^https?://[a-z0-9.-]+(:[0-9]+)?$"},
        },
        PROXY_PORT_KEY: {
            **base,
            "display_name": "Proxy Port OIDC",
            "api_base_url": "http://127.0.0.1:{api_port}/api",
            "integration_params": {
                "api_port": {
                    "pattern": r"^[0-9]{2,5}$",
                    "set_by": "admin",
                    "default": str(upstream.port),
                }
            },
        },
    }


PROXY_KEY = "proxy-oidc"
PROXY_HEADER_KEY = "proxy-header-oidc"
PROXY_META_KEY = "proxy-meta-oidc"
PROXY_PORT_KEY = "proxy-port-oidc"
PROXY_USERINFO_KEY = "proxy-userinfo-oidc"
PROXY_KEYS = (PROXY_KEY, PROXY_HEADER_KEY, PROXY_META_KEY, PROXY_PORT_KEY, PROXY_USERINFO_KEY)
DISCOVERY_SUFFIX = "/.well-known/openid-configuration"
