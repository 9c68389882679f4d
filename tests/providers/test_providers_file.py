"""Operators' providers files: validated by the schema, faults named by entry and field."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import yaml

from personal_connectors.providers.catalog import CatalogError, check_file, load_catalog
from tests.conftest import Tenant
from tests.support.service import ServiceProcess

GOOD = {
    "acme": {
        "display_name": "Acme",
        "authorization_url": "https://{tenant}.acme.example/oauth/authorize",
        "token_url": "https://{tenant}.acme.example/oauth/token",
        "integration_params": {"tenant": {"pattern": "^[a-z0-9-]{1,63}$"}},
        "userinfo": {"url": "https://api.acme.example/me", "id_path": "data.id"},
    }
}


def write(tmp_path: Path, content: object) -> Path:
    path = tmp_path / "providers.yaml"
    path.write_text(yaml.safe_dump(content))
    return path


def with_change(**changes: object) -> dict[str, object]:
    entry = {**GOOD["acme"], **changes}
    return {"acme": {k: v for k, v in entry.items() if v is not None}}


def test_a_good_file_validates_and_merges_over_builtins(tmp_path: Path) -> None:
    entries = check_file(write(tmp_path, {**GOOD, "github": {"display_name": "GitHub Enterprise"}}))
    assert set(entries) == {"acme", "github"}
    assert entries["github"].token_url == "https://github.com/login/oauth/access_token"  # kept
    catalog = load_catalog(write(tmp_path, GOOD))
    assert catalog.get("acme") is not None and catalog.get("github") is not None


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (with_change(surprise=1), "entry 'acme', field 'surprise': Extra inputs are not permitted"),
        (
            with_change(token_url="http://acme.example/token"),
            "entry 'acme', field 'token_url': must be an https URL",
        ),
        (
            with_change(integration_params={}),
            "authorization_url uses {tenant} but integration_params declares no",
        ),
        (with_change(userinfo=None), "userinfo (the identity call"),
        (
            with_change(integration_params={"tenant": {"pattern": "("}}),
            "field 'integration_params.tenant.pattern'",
        ),
        ({"Bad Key": GOOD["acme"]}, "entry 'Bad Key', field 'key'"),
    ],
)
def test_faults_are_named_by_entry_and_field(
    tmp_path: Path, content: object, expected: str
) -> None:
    with pytest.raises(CatalogError) as raised:
        check_file(write(tmp_path, content))
    assert expected in str(raised.value)


def test_the_check_command_exits_nonzero_with_the_message(
    service: ServiceProcess, tmp_path: Path
) -> None:
    bad = write(tmp_path, with_change(token_url="http://acme.example/token"))
    result = service.cli("providers", "check", str(bad), check=False)
    assert result.returncode != 0
    assert "entry 'acme', field 'token_url'" in result.stderr
    good = service.cli("providers", "check", str(write(tmp_path, GOOD)), "--json")
    assert good.returncode == 0 and '"valid": true' in good.stdout


def test_hostile_integration_params_build_no_url(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess
) -> None:
    service.cli("apps", "set", "zendesk", "--client-id", "z", "--client-secret", "z-secret")
    for value in ("evil.com/", "a.evil.com", "x#", "a b"):
        response = api.post(
            "/authorize",
            params=tenant.org,
            headers=tenant.headers,
            json={"connector_type": "zendesk", "integration_params": {"subdomain": value}},
        )
        assert response.status_code == 400, value
        assert response.json()["error"]["details"]["fields"] == ["integration_params.subdomain"]
        assert "evil" not in response.text.replace(value, "")
    ok = api.post(
        "/authorize",
        params=tenant.org,
        headers=tenant.headers,
        json={"connector_type": "zendesk", "integration_params": {"subdomain": "acme"}},
    )
    assert ok.status_code == 200
    assert ok.json()["authorization_url"].startswith(
        "https://acme.zendesk.com/oauth/authorizations/new?"
    )
