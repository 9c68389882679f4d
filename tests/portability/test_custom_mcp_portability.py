"""Export and import of `custom_mcp` connections (SPEC §11): the server, its name and the tokens
travel; the tokens import only where the organization holds the client they were issued to
(its registration's secret is never exported), else the line is refused on its own. Both
databases, the real CLI, and an open MCP server connected through the API."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from personal_connectors.crypto.aead import associated_data
from personal_connectors.identity.service import IdentityService
from personal_connectors.models import Connection, McpClientRegistration, new_id, utcnow
from personal_connectors.portability.importer import ConnectionImporter
from personal_connectors.tokens.vault import TokenVault
from tests.conftest import make_tenant
from tests.portability.test_import_export import PASSPHRASE_VAR, cli_in_process, token
from tests.support import web
from tests.support.protected_mcp_server import ProtectedMcpServer
from tests.support.service import ServiceProcess

SERVER = "https://mcp.example.test/mcp"
CLIENT_ID = "client-of-the-source-org"


@pytest.fixture(scope="module")
def open_server() -> Iterator[ProtectedMcpServer]:
    server = ProtectedMcpServer("Open Tools", None).start()
    yield server
    server.stop()


def custom_line(user_id: str, account_id: str, client_id: str) -> dict[str, Any]:
    return {
        "user_id": user_id,
        "app_key": "custom_mcp",
        "account_id": account_id,
        "access_token": token("at"),
        "refresh_token": token("rt"),
        "expires_at": "2030-01-01T00:00:00Z",
        "scopes": ["openid"],
        "mcp_server_url": SERVER,
        "display_name": "Acme Tools",
        "mcp_client_id": client_id,
    }


def custom_connections(service: ServiceProcess, organization_id: str) -> dict[str, Any]:
    async def work(session, runtime):  # type: ignore[no-untyped-def]
        vault = TokenVault(runtime.sealer)
        rows = await session.scalars(
            select(Connection).where(
                Connection.organization_id == organization_id,
                Connection.app_key == "custom_mcp",
                Connection.deleted_at.is_(None),
            )
        )
        return {
            c.account_id: {
                "id": c.id,
                "access_token": vault.access_token(c),
                "refresh_token": vault.refresh_token(c),
                "mcp_server_url": c.mcp_server_url,
                "display_name": c.display_name,
                "mcp_registration_id": c.mcp_registration_id,
            }
            for c in rows
        }

    return dict(service.run_db(work))


def test_custom_connections_round_trip_and_foreign_registrations_are_refused_per_line(
    service: ServiceProcess, open_server: ProtectedMcpServer, tmp_path: Path
) -> None:
    email = f"custom-mover-{secrets.token_hex(4)}@example.test"
    source = make_tenant(service, email=email)
    connected = web.post(
        f"{service.api}/authorize",
        params=source.org,
        headers=source.headers,
        json={"connector_type": "custom_mcp", "mcp_server_url": open_server.url},
        timeout=30,
    )
    assert connected.status_code == 200 and connected.json()["connected"], connected.text
    authorized = custom_line(source.user_id, "alice", CLIENT_ID)

    async def seed(session, runtime):  # type: ignore[no-untyped-def]
        registration = McpClientRegistration(
            id=new_id("mcr"),
            organization_id=source.organization_id,
            server_url=SERVER,
            issuer="https://auth.example.test",
            authorization_endpoint="https://auth.example.test/authorize",
            token_endpoint="https://auth.example.test/token",
            token_endpoint_auth_method="client_secret_basic",
            client_id=CLIENT_ID,
            key_id=runtime.sealer.key_id,
        )
        registration.client_secret_ct = runtime.sealer.seal(
            "registration-secret",
            associated_data("mcp_client_registrations", registration.id, "client_secret"),
        )
        session.add(registration)
        await session.commit()
        stranger = custom_line(source.user_id, "bob", "another-client")
        lines = [json.dumps(line).encode() for line in (authorized, stranger)]
        report = await ConnectionImporter(session, runtime, source.organization_id).run(lines)
        identities = IdentityService(session)
        target = await identities.create_organization("Custom target")
        await identities.create_user(email, target.id)
        return registration.id, report.as_dict(), target.id

    registration_id, seeded, target_org = service.run_db(seed)
    assert (seeded["imported"], seeded["failed"]) == (1, 1), seeded
    assert seeded["errors"][0]["line"] == 2
    assert "another organization's client registration" in seeded["errors"][0]["message"]
    before = custom_connections(service, source.organization_id)
    assert set(before) == {"alice", open_server.url}
    assert before["alice"]["mcp_registration_id"] == registration_id

    export = tmp_path / "custom.pcx"
    passphrase = {PASSPHRASE_VAR: "correct horse battery staple"}
    exported = cli_in_process(
        service, "connections", "export", str(export), "--org", source.organization_id,
        "--passphrase-env", PASSPHRASE_VAR, "--json", env=passphrase,
    )  # fmt: skip
    assert exported.returncode == 0, exported.stderr
    assert json.loads(exported.stdout)["exported"] == 2

    # Another organization: the open server's connection moves, the authorized one is refused.
    into_other = cli_in_process(
        service, "connections", "import", str(export), "--org", target_org,
        "--passphrase-env", PASSPHRASE_VAR, "--json", env=passphrase,
    )  # fmt: skip
    report = json.loads(into_other.stdout)
    assert (report["imported"], report["failed"]) == (1, 1), report
    assert "connect the server again" in report["errors"][0]["message"]
    assert authorized["access_token"] not in into_other.stdout + into_other.stderr
    (moved,) = custom_connections(service, target_org).values()
    assert (moved["mcp_server_url"], moved["display_name"]) == (open_server.url, "Open Tools")
    assert moved["access_token"] is None and moved["mcp_registration_id"] is None

    # A restore into the same organization: the same client, so the tokens come back whole.
    async def lose(session, runtime):  # type: ignore[no-untyped-def]
        connection = await session.get(Connection, before["alice"]["id"])
        connection.deleted_at = utcnow()
        await session.commit()

    service.run_db(lose)
    restored = cli_in_process(
        service, "connections", "import", str(export), "--org", source.organization_id,
        "--passphrase-env", PASSPHRASE_VAR, "--json", env=passphrase,
    )  # fmt: skip
    assert json.loads(restored.stdout) == {"imported": 1, "updated": 1, "failed": 0, "errors": []}
    after = custom_connections(service, source.organization_id)
    assert after["alice"] | {"id": None} == {
        "id": None,
        "access_token": authorized["access_token"],
        "refresh_token": authorized["refresh_token"],
        "mcp_server_url": SERVER,
        "display_name": "Acme Tools",
        "mcp_registration_id": registration_id,
    }
    assert after[open_server.url]["id"] == before[open_server.url]["id"]  # updated in place
