"""The proxied ``{path}`` read from the raw request target (``proxy.endpoints.raw_path``): as
sent, percent-encoding kept; a byte outside ASCII, which this service's HTTP parser refuses but
a lenient server may pass on, percent-encoded as that byte, never read as a character and
encoded again as its UTF-8 (which would reach the provider as other bytes)."""

from __future__ import annotations

import pytest
from starlette.requests import Request

from personal_connectors.config import API_PREFIX
from personal_connectors.proxy.endpoints import raw_path


def path_of(target: bytes) -> str:
    raw = f"{API_PREFIX}/conn_1/proxy/".encode() + target
    return raw_path(Request({"type": "http", "raw_path": raw, "path": "", "headers": []}))


@pytest.mark.parametrize(
    ("target", "path"),
    [
        (b"echo/caf%C3%A9/%e9", "echo/caf%C3%A9/%e9"),
        (b"echo/a%2Fb/%25C3%25A9", "echo/a%2Fb/%25C3%25A9"),
        (b"echo/caf\xc3\xa9", "echo/caf%C3%A9"),
        (b"echo/\xe9t\xe9", "echo/%E9t%E9"),
    ],
)
def test_the_path_keeps_every_byte_as_sent(target: bytes, path: str) -> None:
    assert path_of(target) == path
