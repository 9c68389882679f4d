"""The canonical URI of a resource (RFC 8707; the MCP authorization spec's form): what the
service sends as `resource` and compares a protected resource's metadata with."""

from __future__ import annotations

import pytest

from personal_connectors.oauth.rfc8707 import canonical_resource


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        ("HTTPS://MCP.Example.COM/mcp", "https://mcp.example.com/mcp"),
        ("https://mcp.example.com:443/mcp", "https://mcp.example.com/mcp"),
        ("https://mcp.example.com:8443/mcp", "https://mcp.example.com:8443/mcp"),
        ("https://mcp.example.com/", "https://mcp.example.com"),
        ("https://mcp.example.com/mcp/", "https://mcp.example.com/mcp/"),  # a path is kept
        ("https://mcp.example.com/mcp#part", "https://mcp.example.com/mcp"),
        ("http://[::1]:8080/mcp", "http://[::1]:8080/mcp"),
    ],
)
def test_the_canonical_form(given: str, canonical: str) -> None:
    assert canonical_resource(given) == canonical


@pytest.mark.parametrize("given", ["mcp.example.com/mcp", "ftp://mcp.example.com/", "https:///x"])
def test_what_is_no_absolute_web_uri_is_refused(given: str) -> None:
    with pytest.raises(ValueError):
        canonical_resource(given)
