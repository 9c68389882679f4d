"""The operator CLI: `--json` prints exactly one JSON value; errors go to stderr, exit non-zero."""

from __future__ import annotations

import json

import httpx

from tests.conftest import Tenant
from tests.flows.conftest import connect
from tests.support import web
from tests.support.db import stored_tokens
from tests.support.service import ServiceProcess


def run_json(service: ServiceProcess, *args: str) -> object:
    result = service.cli(*args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_bootstrap_an_org_user_and_key_then_call_the_api(service: ServiceProcess) -> None:
    org = run_json(service, "orgs", "create", "Acme Corp")
    assert (
        set(org) == {"id", "name"} and org["name"] == "Acme Corp" and org["id"].startswith("org_")
    )  # type: ignore[index]
    user = run_json(
        service,
        "users",
        "create",
        "Owner@Acme.test",
        "--org",
        org["id"],
        "--role",
        "owner",
        "--name",
        "Olive",
    )  # type: ignore[index]
    assert set(user) == {"id", "email"} and user["email"] == "owner@acme.test"  # type: ignore[index]
    key = run_json(
        service,
        "api-keys",
        "create",
        "--user",
        user["id"],
        "--name",
        "ci",
        "--expires-in-days",
        "30",
    )  # type: ignore[index]
    assert set(key) == {"id", "key"} and key["key"].startswith("ak_") and len(key["key"]) == 43  # type: ignore[index]

    response = web.get(
        f"{service.api}/apps",
        params={"organization_id": org["id"]},
        headers={"X-API-Key": key["key"]},
    )  # type: ignore[index]
    assert response.status_code == 200

    revoked = service.cli("api-keys", "revoke", key["id"])  # type: ignore[index]
    assert revoked.returncode == 0
    after = web.get(
        f"{service.api}/apps",
        params={"organization_id": org["id"]},
        headers={"X-API-Key": key["key"]},
    )  # type: ignore[index]
    assert after.status_code == 401 and after.json()["error"]["code"] == "API_KEY_DEACTIVATED"


def test_errors_go_to_stderr_with_a_nonzero_exit(service: ServiceProcess) -> None:
    result = service.cli(
        "users", "create", "a@b.test", "--org", "org_" + "0" * 32, "--json", check=False
    )
    assert result.returncode != 0 and result.stdout == ""
    assert "no organization" in result.stderr


def test_apps_set_prints_the_redirect_uri_to_register(
    service: ServiceProcess, tenant: Tenant
) -> None:
    # Organization-scoped, so no other test sees GitHub configured service-wide.
    org = tenant.organization_id
    out = run_json(
        service,
        "apps",
        "set",
        "github",
        "--org",
        org,
        "--client-id",
        "gh-id",
        "--client-secret",
        "gh-secret",
        "--scopes",
        "read:user repo",
    )
    assert out == {
        "app_key": "github",
        "client_id": "gh-id",
        "organization_id": org,
        "scopes": ["read:user", "repo"],
        "integration_params": {},
        "redirect_uri": f"{service.base_url}/v1/personal-connectors/callback",
    }
    human = service.cli(
        "apps",
        "set",
        "github",
        "--org",
        org,
        "--client-id",
        "gh-id",
        "--client-secret",
        "gh-secret",
    )
    assert "gh-secret" not in human.stdout and "callback" in human.stdout


def test_providers_list_includes_builtins_and_the_file(service: ServiceProcess) -> None:
    providers = run_json(service, "providers", "list")
    keys = {item["key"] for item in providers}  # type: ignore[union-attr]
    assert {
        "github",
        "google",
        "slack",
        "notion",
        "atlassian",
        "clickup",
        "microsoft",
        "local-oidc",
    } <= keys
    assert set(providers[0]) == {"key", "display_name", "auth_mode", "category"}  # type: ignore[index]


def test_connections_list_shows_the_account_never_its_tokens(
    service: ServiceProcess, api: httpx.Client, tenant: Tenant
) -> None:
    connection_id = connect(api, tenant, login="erin")
    access_token, refresh_token = stored_tokens(service, connection_id)
    result = service.cli("connections", "list", "--org", tenant.organization_id, "--json")
    [row] = json.loads(result.stdout)
    assert row["id"] == connection_id and row["account_email"] == "erin@example.test"
    assert row["user_id"] == tenant.user_id and row["organization_id"] == tenant.organization_id
    assert access_token and refresh_token
    assert access_token not in result.stdout and refresh_token not in result.stdout


def test_apps_set_takes_the_admin_set_params(service: ServiceProcess) -> None:
    """``--param`` sets what a member may not choose (the generic OIDC entry's issuer host)."""
    base = ("apps", "set", "oidc", "--client-id", "oidc-id", "--client-secret", "oidc-secret")
    out = json.loads(
        service.cli(*base, "--param", "issuer_host=login.example.com", "--json").stdout
    )
    assert out["integration_params"] == {"issuer_host": "login.example.com"}
    refused = service.cli(*base, "--param", "issuer_host=evil.example/x", check=False)
    assert refused.returncode != 0 and "issuer_host" in refused.stdout + refused.stderr
    malformed = service.cli(*base, "--param", "issuer_host", check=False)
    assert malformed.returncode != 0 and "KEY=VALUE" in malformed.stdout + malformed.stderr
