"""`mcp: {url}` in catalog entries (SPEC §11): the operator's fixed https URL of the provider's
own remote MCP server."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from personal_connectors.providers.catalog import CatalogError, check_file, load_catalog

ENTRY = {
    "display_name": "Acme",
    "authorization_url": "https://acme.example/oauth/authorize",
    "token_url": "https://acme.example/oauth/token",
    "userinfo": {"url": "https://api.acme.example/me", "id_path": "id"},
}


def check(tmp_path: Path, mcp: object) -> None:
    path = tmp_path / "providers.yaml"
    path.write_text(yaml.safe_dump({"acme": {**ENTRY, "mcp": mcp}}))
    check_file(path)


def test_an_entry_may_name_its_mcp_server(tmp_path: Path) -> None:
    check(tmp_path, {"url": "https://mcp.acme.example/mcp"})
    check(tmp_path, {"url": "http://127.0.0.1:8123/mcp"})  # a local server, in development


@pytest.mark.parametrize(
    ("mcp", "expected"),
    [
        ({"url": "http://mcp.acme.example/mcp"}, "must be an https URL"),
        ({"url": "https://{tenant}.acme.example/mcp"}, "takes no template variables"),
        ({"url": "https://mcp.acme.example/mcp", "transport": "sse"}, "transport"),
        ({}, "url"),
    ],
)
def test_a_bad_mcp_server_is_refused_with_its_field(
    tmp_path: Path, mcp: object, expected: str
) -> None:
    with pytest.raises(CatalogError) as raised:
        check(tmp_path, mcp)
    assert "entry 'acme'" in str(raised.value) and expected in str(raised.value)


def test_builtin_entries_name_the_providers_remote_mcp_servers() -> None:
    servers = {key: e.mcp.url for key, e in load_catalog().entries.items() if e.mcp}
    assert len(servers) >= 15
    assert servers["github"] == "https://api.githubcopilot.com/mcp/"
    assert servers["linear"] == "https://mcp.linear.app/mcp"
    assert all(url.startswith("https://") for url in servers.values())
