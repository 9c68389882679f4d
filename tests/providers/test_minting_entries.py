"""Entries of the minting modes (SPEC §10): what ``mint`` must say, checked at load."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from personal_connectors.providers.catalog import CatalogError, check_file

CLIENT_CREDENTIALS: dict[str, Any] = {
    "display_name": "Partner API",
    "auth_mode": "oauth2_client_credentials",
    "token_url": "https://partner.example/oauth/token",
    "credentials": [
        {"name": "app_id", "label": "Client ID", "secret": False},
        {"name": "app_secret", "label": "Client secret"},
    ],
    "mint": {"client_id": "{app_id}", "client_secret": "{app_secret}"},
}
GOOGLE: dict[str, Any] = {
    "display_name": "Google service account",
    "auth_mode": "jwt_bearer",
    "token_url": "https://oauth2.googleapis.com/token",
    "default_scopes": ["https://www.googleapis.com/auth/drive.readonly"],
    "credentials": [
        {"name": "client_email", "label": "Service account email", "secret": False},
        {"name": "private_key_id", "label": "Key id", "secret": False},
        {"name": "private_key", "label": "Private key"},
    ],
    "mint": {
        "assertion": {
            "key_id": "{private_key_id}",
            "claims": {"iss": "{client_email}"},
            "scope_claim": True,
        }
    },
}


def check(tmp_path: Path, base: dict[str, Any], **changes: Any) -> None:
    entry = {k: v for k, v in {**base, **changes}.items() if v is not None}
    path = tmp_path / "providers.yaml"
    path.write_text(yaml.safe_dump({"minting": entry}))
    check_file(path)


def test_the_documented_minting_entries_are_valid(tmp_path: Path) -> None:
    check(tmp_path, CLIENT_CREDENTIALS)
    check(tmp_path, GOOGLE)


@pytest.mark.parametrize(
    ("base", "changes", "expected"),
    [
        (CLIENT_CREDENTIALS, {"mint": None}, "needs mint (how a token is minted)"),
        (CLIENT_CREDENTIALS, {"mint": {"client_id": "{app_id}"}}, "needs mint.client_id and"),
        (
            CLIENT_CREDENTIALS,
            {"mint": {"client_id": "{app_id}", "client_secret": "{password}"}},
            "mint.client_secret uses {password}, which is no credentials field",
        ),
        (GOOGLE, {"mint": {"client_id": "{client_email}"}}, "needs mint.assertion"),
        (
            GOOGLE,
            {"mint": {"assertion": {"private_key": "client_email"}}},
            "names 'client_email', which must be a secret credentials field",
        ),
        (
            GOOGLE,
            {"mint": {"assertion": {"claims": {"exp": "1"}}}},
            "the service sets exp itself",
        ),
        (GOOGLE, {"mint": {"assertion": {"algorithm": "HS256"}}}, "algorithm"),
    ],
)
def test_an_incomplete_minting_entry_is_refused_with_the_reason(
    tmp_path: Path, base: dict[str, Any], changes: dict[str, Any], expected: str
) -> None:
    with pytest.raises(CatalogError) as caught:
        check(tmp_path, base, **changes)
    assert expected in str(caught.value)


def test_mint_is_for_the_minting_modes_only(tmp_path: Path) -> None:
    api_key = {
        "display_name": "Key API",
        "auth_mode": "api_key",
        "credentials": [{"name": "api_key", "label": "API key"}],
        "api_auth": {"headers": {"X-Key": "{api_key}"}},
        "test_request": {"url": "https://api.example.com/me"},
        "mint": {"client_id": "{api_key}", "client_secret": "{api_key}"},
    }
    with pytest.raises(CatalogError) as caught:
        check(tmp_path, api_key)
    assert "mint is for oauth2_client_credentials and jwt_bearer only" in str(caught.value)
