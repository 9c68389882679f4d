"""Protected resource metadata (RFC 9728): where it is looked for, and what it must say."""

from __future__ import annotations

import pytest

from personal_connectors.oauth.rfc9728 import (
    ResourceMetadataError,
    challenge_params,
    parse,
    well_known_urls,
)

SERVER = "https://mcp.example.com/v1/mcp"


def test_the_challenge_names_its_metadata() -> None:
    header = (
        'Bearer error="invalid_token", error_description="No \\"token\\", sorry", '
        'resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/v1/mcp",'
        " scope=files:read"
    )
    params = challenge_params(header)
    assert params["resource_metadata"] == (
        "https://mcp.example.com/.well-known/oauth-protected-resource/v1/mcp"
    )
    assert params["error_description"] == 'No "token", sorry'
    assert params["scope"] == "files:read"
    assert challenge_params(None) == {}


def test_the_well_known_locations_path_first_then_root() -> None:
    assert well_known_urls(SERVER) == [
        "https://mcp.example.com/.well-known/oauth-protected-resource/v1/mcp",
        "https://mcp.example.com/.well-known/oauth-protected-resource",
    ]
    assert well_known_urls("https://mcp.example.com") == [
        "https://mcp.example.com/.well-known/oauth-protected-resource"
    ]


def test_the_metadata_must_describe_the_server_and_name_an_authorization_server() -> None:
    found = parse(
        {
            "resource": "https://MCP.example.com:443/v1/mcp",
            "authorization_servers": ["https://auth.example.com"],
            "scopes_supported": ["files:read"],
        },
        SERVER,
    )
    assert found.authorization_servers == ("https://auth.example.com",)
    assert found.scopes_supported == ("files:read",)
    for document in (
        {"resource": "https://mcp.example.com/other", "authorization_servers": ["https://a"]},
        {"resource": "https://evil.example/v1/mcp", "authorization_servers": ["https://a"]},
        {"resource": SERVER, "authorization_servers": []},
        {"resource": SERVER},
        ["not", "an", "object"],
    ):
        with pytest.raises(ResourceMetadataError):
            parse(document, SERVER)
