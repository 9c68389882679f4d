"""Entries for credentials other than the authorization code (SPEC §10): what the schema demands."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from personal_connectors.providers.catalog import CatalogError, check_file

KEYAPI: dict[str, Any] = {
    "display_name": "Key API",
    "auth_mode": "api_key",
    "api_base_url": "https://api.example.com/v1",
    "credentials": [
        {"name": "api_key", "label": "API key", "secret": True, "pattern": "^[A-Za-z0-9_-]{8,128}$"}
    ],
    "api_auth": {"headers": {"Authorization": "Bearer {api_key}"}},
    "test_request": {
        "url": "https://api.example.com/v1/me",
        "headers": {"Authorization": "Bearer {api_key}"},
    },
}


def check(tmp_path: Path, **changes: Any) -> None:
    entry = {k: v for k, v in {**KEYAPI, **changes}.items() if v is not None}
    path = tmp_path / "providers.yaml"
    path.write_text(yaml.safe_dump({"keyapi": entry}))
    check_file(path)


def test_the_spec_example_is_a_valid_entry(tmp_path: Path) -> None:
    check(tmp_path)
    check(tmp_path, auth_mode="basic", api_auth={"basic": {"username": "{api_key}"}})
    check(tmp_path, api_auth={"query": {"key": "{api_key}"}})


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"credentials": []}, "auth_mode api_key needs its credentials fields"),
        ({"api_auth": None}, "needs api_auth (how the credentials are sent)"),
        ({"test_request": None}, "test_request (the call that proves them)"),
        ({"api_auth": {}}, "declare headers, query or basic"),
        (
            {"api_auth": {"headers": {"X-Key": "{password}"}}},
            "api_auth.headers.X-Key uses {password}, which is neither access_token nor",
        ),
        (
            {"credentials": [{"name": "access_token", "label": "Token"}]},
            "must be a lower-case identifier that is not a service value",
        ),
        (
            {"credentials": [{"name": "k", "label": "K"}, {"name": "k", "label": "K2"}]},
            "each field name once",
        ),
        ({"credentials": [{"name": "k", "label": "K", "pattern": "("}]}, "pattern does not"),
        ({"auth_mode": "oauth2_client_credentials"}, "needs token_url"),
        (
            {
                "auth_mode": "oauth2",
                "authorization_url": "https://example.com/a",
                "token_url": "https://example.com/t",
                "userinfo": {"url": "https://example.com/me"},
            },
            "credentials are for api_key, basic and minting modes only",
        ),
        (
            # A credential is never part of a URL: it could choose the host, and URLs are logged.
            {"test_request": {"url": "https://api.example.com/v1/me?key={api_key}"}},
            "test_request.url uses {api_key} but integration_params declares no pattern",
        ),
    ],
)
def test_an_incomplete_entry_is_refused_with_the_reason(
    tmp_path: Path, changes: dict[str, Any], expected: str
) -> None:
    with pytest.raises(CatalogError) as caught:
        check(tmp_path, **changes)
    assert expected in str(caught.value)
