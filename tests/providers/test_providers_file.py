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


def test_a_file_overrides_builtins_in_its_own_catalog_only(tmp_path: Path) -> None:
    """The built-in entries are read once a process; a file's override never leaks into them."""
    overridden = load_catalog(write(tmp_path, {"github": {"display_name": "GitHub Enterprise"}}))
    assert overridden.require("github").display_name == "GitHub Enterprise"
    assert load_catalog().require("github").display_name == "GitHub"
    assert "acme" in load_catalog(write(tmp_path, GOOD))
    assert "acme" not in load_catalog()


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (with_change(surprise=1), "entry 'acme', field 'surprise': Extra inputs are not permitted"),
        (
            with_change(token_endpoint_auth_method="none", pkce=False),
            "token_endpoint_auth_method none (a public client) needs pkce: true",
        ),
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
        (
            with_change(integration_params={"tenant": {"pattern": "^[a-z]+$", "required": False}}),
            "uses {tenant}, so integration_params.tenant must be required or have a default",
        ),
        (
            with_change(
                integration_params={"tenant": {"pattern": "^[a-z]+$", "default": "Not-Valid"}}
            ),
            "field 'integration_params.tenant': default 'Not-Valid' does not match the pattern",
        ),
        (
            with_change(token_metadata={"leak": "authed_user.access_token"}),
            "field 'token_metadata': leak: 'authed_user.access_token' looks like a credential",
        ),
        (
            with_change(callback_metadata=["code"]),
            "field 'callback_metadata': 'code' is an OAuth parameter or a credential",
        ),
        (
            with_change(
                revocation={"url": "https://api.acme.example/revoke", "body": {"x": "{mystery}"}}
            ),
            "revocation.body.x uses {mystery}, which is neither a service value",
        ),
        (
            with_change(refresh_url="http://acme.example/refresh"),
            "entry 'acme', field 'refresh_url': must be an https URL",
        ),
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
    for value in ("evil.com/", "a.evil.com", "a.b", "", "x#", "a b", 7):
        response = api.post(
            "/authorize",
            params=tenant.org,
            headers=tenant.headers,
            json={"connector_type": "zendesk", "integration_params": {"subdomain": value}},
        )
        assert response.status_code == 400, value
        assert response.json()["error"]["code"] == "VALIDATION_ERROR"
        assert response.json()["error"]["details"]["fields"] == ["integration_params.subdomain"]
        assert "authorization_url" not in response.json() and "zendesk.com" not in response.text
        assert "evil" not in response.text.replace(str(value), "")
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


def test_a_template_variable_with_a_default_needs_no_value(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess
) -> None:
    """Microsoft's {tenant} is `common` unless the caller names a directory."""
    service.cli("apps", "set", "microsoft", "--client-id", "m", "--client-secret", "m-secret")

    def authorize(**body: object) -> httpx.Response:
        return api.post(
            "/authorize",
            params=tenant.org,
            headers=tenant.headers,
            json={"connector_type": "microsoft", **body},
        )

    default = authorize()
    assert default.status_code == 200, default.text
    assert default.json()["authorization_url"].startswith(
        "https://login.microsoftonline.com/common/oauth2/v2.0/authorize?"
    )
    pinned = authorize(integration_params={"tenant": "contoso.onmicrosoft.com"})
    assert pinned.json()["authorization_url"].startswith(
        "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/authorize?"
    )
    hostile = authorize(integration_params={"tenant": "evil.com/"})
    assert hostile.status_code == 400 and "authorization_url" not in hostile.json()


def test_a_key_in_two_builtin_files_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from personal_connectors.providers import catalog as catalog_module

    (tmp_path / "a.yaml").write_text(yaml.safe_dump(GOOD))
    (tmp_path / "b.yaml").write_text(yaml.safe_dump(GOOD))
    monkeypatch.setattr(catalog_module, "BUILTIN_CATALOG", tmp_path)
    with pytest.raises(CatalogError, match=r"b\.yaml: entry 'acme' is already in a\.yaml"):
        load_catalog()
