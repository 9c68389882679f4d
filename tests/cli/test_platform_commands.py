"""The operator CLI for platform access (SPEC §8): a service key from the shell, and the
listings of organizations, users, API keys and OAuth apps (``--json``: one array)."""

from __future__ import annotations

import httpx

from tests.cli.test_commands import run_json
from tests.conftest import PROVIDER_KEY, Tenant
from tests.support.service import ServiceProcess


def test_a_service_key_created_from_the_shell_acts_for_end_users(
    service: ServiceProcess, api: httpx.Client, tenant: Tenant
) -> None:
    created = run_json(
        service,
        "api-keys",
        "create",
        "--org",
        tenant.organization_id,
        "--service",
        "--name",
        "backend",
    )
    assert set(created) == {"id", "key"}  # type: ignore[arg-type]
    key = created["key"]  # type: ignore[index]
    headers = {"X-API-Key": key}
    assert api.get("", params=tenant.org, headers=headers).json() == []
    refused = api.get("/apps", params=tenant.org, headers=headers)
    assert refused.status_code == 403

    listed = run_json(service, "api-keys", "list", "--org", tenant.organization_id)
    assert key not in str(listed)
    by_id = {row["id"]: row for row in listed}  # type: ignore[union-attr]
    assert by_id[created["id"]]["kind"] == "service"  # type: ignore[index]
    assert by_id[created["id"]]["name"] == "backend"  # type: ignore[index]
    assert by_id[tenant.api_key_id]["kind"] == "user"
    assert by_id[tenant.api_key_id]["user_id"] == tenant.user_id


def test_api_keys_create_says_which_options_go_together(
    service: ServiceProcess, tenant: Tenant
) -> None:
    for args in (
        ("--service",),
        ("--user", tenant.user_id, "--service"),
        ("--org", tenant.organization_id),
        ("--org", tenant.organization_id, "--service", "--exchange"),
    ):
        result = service.cli("api-keys", "create", *args, "--json", check=False)
        assert result.returncode != 0 and result.stdout == ""
        assert "error:" in result.stderr


def test_orgs_users_and_apps_are_listed(
    service: ServiceProcess, tenant: Tenant, api: httpx.Client
) -> None:
    # An end user is not a user of the organization: users list leaves it out.
    service_key = run_json(
        service, "api-keys", "create", "--org", tenant.organization_id, "--service"
    )
    made = api.put(
        "/end-users/someone",
        params=tenant.org,
        headers={"X-API-Key": service_key["key"]},  # type: ignore[index]
        json={},
    )
    assert made.status_code == 200

    orgs = run_json(service, "orgs", "list")
    assert tenant.organization_id in {row["id"] for row in orgs}  # type: ignore[union-attr]
    users = run_json(service, "users", "list", "--org", tenant.organization_id)
    assert [(row["id"], row["role"]) for row in users] == [(tenant.user_id, "owner")]  # type: ignore[union-attr]
    apps = run_json(service, "apps", "list")
    assert PROVIDER_KEY in {row["app_key"] for row in apps}  # type: ignore[union-attr]
    assert all("client_secret" not in row for row in apps)  # type: ignore[union-attr]
    in_effect = run_json(service, "apps", "list", "--org", tenant.organization_id)
    assert PROVIDER_KEY in {row["app_key"] for row in in_effect}  # type: ignore[union-attr]

    unknown = service.cli("users", "list", "--org", "org_unknown", "--json", check=False)
    assert unknown.returncode != 0 and "no organization" in unknown.stderr
