"""What an entry says about its API (SPEC §9): `api_base_url` may use integration params and
provider metadata that `metadata_patterns` guards, checked at load; `api_auth` is read the same
way wherever credentials go on a call (providers.api_auth)."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
import yaml

from personal_connectors.providers.api_auth import (
    MissingCredentialValue,
    apply_api_auth,
)
from personal_connectors.providers.catalog import CatalogError, check_file
from personal_connectors.providers.schema import ApiAuth

ENTRY: dict[str, Any] = {
    "display_name": "CRM",
    "authorization_url": "https://login.crm.example/authorize",
    "token_url": "https://login.crm.example/token",
    "userinfo": {"url": "https://login.crm.example/me"},
    "token_metadata": {"instance_url": "instance_url", "region": "region"},
    "api_base_url": "{instance_url}/services/data",
    "metadata_patterns": {"instance_url": r"^https://[a-z0-9-]+\.crm\.example$"},
}


def check(tmp_path: Path, **changes: Any) -> None:
    entry = {k: v for k, v in {**ENTRY, **changes}.items() if v is not None}
    path = tmp_path / "providers.yaml"
    path.write_text(yaml.safe_dump({"crm": entry}))
    check_file(path)


def test_an_api_base_url_from_patterned_metadata_loads(tmp_path: Path) -> None:
    check(tmp_path)
    check(
        tmp_path,
        api_base_url="https://{region}.api.crm.example/v2",
        metadata_patterns={"region": "^(eu|us)$"},
    )
    check(
        tmp_path,
        api_base_url="https://api.crm.example/{tenant}",
        metadata_patterns=None,
        integration_params={"tenant": {"pattern": "^[a-z]{1,20}$"}},
    )


@pytest.mark.parametrize(
    ("changes", "said"),
    [
        ({"metadata_patterns": None}, "instance_url"),
        ({"metadata_patterns": {"instance_url": "https://x"}}, "anchored"),
        ({"metadata_patterns": {"instance_url": "^(https$"}}, "compile"),
        ({"metadata_patterns": {"instance_url": "^x$", "nowhere": "^x$"}}, "nowhere"),
        ({"api_base_url": "https://{region}.crm.example"}, "region"),
        ({"api_base_url": "https://api.crm.example/{access_token}"}, "access_token"),
        ({"api_base_url": "{instance_url}.evil.example"}, "api_base_url"),
        (
            {
                "api_base_url": "{tenant}/api",
                "metadata_patterns": None,
                "integration_params": {"tenant": {"pattern": "^https://[a-z]+$"}},
            },
            "tenant",
        ),
    ],
)
def test_an_unguarded_api_base_url_is_refused_at_load(
    tmp_path: Path, changes: dict[str, Any], said: str
) -> None:
    with pytest.raises(CatalogError, match=said):
        check(tmp_path, **changes)


def test_api_auth_fills_headers_query_and_basic() -> None:
    values = {"access_token": "tok", "email": "a@b.example", "api_token": "secret"}
    default = apply_api_auth(None, values)
    assert (default.headers, default.query) == ({"Authorization": "Bearer tok"}, {})
    declared = apply_api_auth(
        ApiAuth(headers={"X-Api-Key": "Key {access_token}"}, query={"key": "{access_token}"}),
        values,
    )
    assert (declared.headers, declared.query) == ({"X-Api-Key": "Key tok"}, {"key": "tok"})
    basic = apply_api_auth(
        ApiAuth.model_validate({"basic": {"username": "{email}/token", "password": "{api_token}"}}),
        values,
    )
    expected = base64.b64encode(b"a@b.example/token:secret").decode()
    assert basic.headers == {"Authorization": f"Basic {expected}"}
    with pytest.raises(MissingCredentialValue, match="api_token") as refused:
        apply_api_auth(ApiAuth(headers={"X": "{api_token}"}), {"access_token": "tok-SECRET-1"})
    assert "SECRET" not in str(refused.value)
