"""Metadata and registration answers are read up to a cap (``oauth.documents``): a server that
sends a huge body, with or without ``Content-Length``, is refused before it is read whole, over
a real loopback connection to a server that counts what it sent."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from personal_connectors.oauth import rfc7591, rfc9728
from personal_connectors.oauth.documents import MAX_DOCUMENT_BYTES
from personal_connectors.oauth.errors import ProviderBadAnswer
from personal_connectors.oauth.rfc8414 import MetadataCache, MetadataUnavailable
from personal_connectors.outbound.client import OutboundClient
from tests.support.loopback import ThreadedUvicorn
from tests.support.oidc import free_port

CHUNK = b" " * 65536
HUGE_BYTES = 64 * 1024 * 1024  # far more than loopback socket buffers hold


class HugeAnswers:
    """Answers every request 200 with ``HUGE_BYTES`` of JSON whitespace; ``/declared`` with a
    ``Content-Length``, others chunked. ``sent`` counts the bytes handed to the connection."""

    def __init__(self) -> None:
        self.sent = 0
        self.port = free_port()
        self._server = ThreadedUvicorn(self._app, port=self.port, log_level="error")

    async def _app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        headers = [(b"content-type", b"application/json")]
        if scope["path"] == "/declared":
            headers.append((b"content-length", str(HUGE_BYTES).encode()))
        # uvicorn drops what is sent after the client hung up without a word; it says so on
        # ``receive`` instead, so the count stops there.
        hung_up = asyncio.create_task(_disconnect(receive))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        try:
            while self.sent < HUGE_BYTES and not hung_up.done():
                await send({"type": "http.response.body", "body": CHUNK, "more_body": True})
                self.sent += len(CHUNK)
                await asyncio.sleep(0)  # (lets the hang-up be noticed)
            await send({"type": "http.response.body", "body": b""})
        except OSError:
            return  # the client hung up
        finally:
            hung_up.cancel()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> HugeAnswers:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()


async def _disconnect(receive: Any) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


@pytest.fixture
def huge() -> Iterator[HugeAnswers]:
    server = HugeAnswers().start()
    yield server
    server.stop()


def fetch(work: Any) -> None:
    async def run() -> None:
        async with OutboundClient(plain=None) as http:
            await work(http)

    asyncio.run(run())


@pytest.mark.parametrize("path", ["/chunked", "/declared"])
def test_protected_resource_metadata_is_refused_past_the_cap(huge: HugeAnswers, path: str) -> None:
    async def work(http: OutboundClient) -> None:
        with pytest.raises(rfc9728.ResourceMetadataUnavailable, match="over 64 KiB"):
            await rfc9728.discover(
                http,
                "http://127.0.0.1/mcp",
                f'Bearer resource_metadata="{huge.url(path)}"',
                call_seconds=30,
            )

    fetch(work)
    assert huge.sent < HUGE_BYTES  # the read stopped: the server could not send it all
    assert MAX_DOCUMENT_BYTES < HUGE_BYTES


def test_authorization_server_metadata_is_refused_past_the_cap(huge: HugeAnswers) -> None:
    async def work(http: OutboundClient) -> None:
        with pytest.raises(MetadataUnavailable, match="over 64 KiB"):
            await MetadataCache().get(
                http, huge.url("/.well-known/openid-configuration"), None, allow_http=True
            )

    fetch(work)
    assert huge.sent < HUGE_BYTES


def test_a_registration_answer_is_refused_past_the_cap(huge: HugeAnswers) -> None:
    metadata = rfc7591.client_metadata(
        redirect_uri="https://pc.example/cb",
        client_name="t",
        auth_method="client_secret_basic",
        scope=None,
    )

    async def work(http: OutboundClient) -> None:
        with pytest.raises(ProviderBadAnswer, match="over 64 KiB"):
            await rfc7591.register(http, huge.url("/register"), metadata, call_seconds=30)

    fetch(work)
    assert huge.sent < HUGE_BYTES
