"""`connectors connections import|export`: JSON Lines in, passphrase-encrypted lines out.

Runs the real CLI against the service's database (SQLite and PostgreSQL) and checks the result
where users see it: the API's connection list, and the tokens the vault opens.
"""

from __future__ import annotations

import json
import os
import secrets
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
from typer.testing import CliRunner

from personal_connectors.apps.service import OAuthAppService
from personal_connectors.cli.main import app
from personal_connectors.events.types import EventType
from personal_connectors.exceptions import ConnectorNotConfigured
from personal_connectors.identity.service import IdentityService
from personal_connectors.models import Connection, ConnectionEvent
from personal_connectors.portability.envelope import MAGIC
from personal_connectors.portability.importer import ConnectionImporter
from personal_connectors.tokens.vault import TokenVault
from tests.conftest import PROVIDER_KEY, Tenant, make_tenant
from tests.credentials.test_credentials import submit
from tests.credentials.test_credentials import token as hand_out
from tests.support import outputs, web
from tests.support.credentials_api import (
    BASIC_API,
    CC_API,
    EMAIL,
    JWT_API,
    KEY_API,
    SERVICE_ACCOUNT,
    CredentialsApi,
)
from tests.support.platform import make_organization_key
from tests.support.service import ServiceProcess

PASSPHRASE_VAR = "PC_TEST_EXPORT_PASSPHRASE"


def token(kind: str) -> str:
    return f"{kind}-{secrets.token_urlsafe(18)}"


def record(user_id: str, account_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "user_id": user_id,
        "app_key": PROVIDER_KEY,
        "account_id": account_id,
        "account_email": f"{account_id}@example.test",
        "account_name": account_id.title(),
        "access_token": token("at"),
        "refresh_token": token("rt"),
        "expires_at": "2030-01-01T00:00:00Z",
        "scopes": ["openid", "email"],
        "token_type": "Bearer",
        **fields,
    }


def write_lines(path: Path, lines: list[dict[str, Any] | str]) -> Path:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return path


def cli(
    service: ServiceProcess, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The real `connectors` process, as an operator runs it."""
    return outputs.run(
        [sys.executable, "-m", "personal_connectors", *args],
        f"connectors {' '.join(args[:2])}",
        env={**os.environ, **service.env, **(env or {})},
        timeout=60,
    )


def cli_in_process(
    service: ServiceProcess, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The same command run in this process: no interpreter start-up, so tests stay quick."""
    result = CliRunner().invoke(app, list(args), env={**service.env, **(env or {})})
    return subprocess.CompletedProcess(list(args), result.exit_code, result.stdout, result.stderr)


def secrets_in(lines: list[dict[str, Any] | str]) -> list[str]:
    found = []
    for line in lines:
        if isinstance(line, dict):
            found += [line[k] for k in ("access_token", "refresh_token") if line.get(k)]
    return found


def live_connections(service: ServiceProcess, organization_id: str) -> dict[str, dict[str, Any]]:
    """The org's live connections by account id, with their tokens opened by the vault."""

    async def work(session, runtime):  # type: ignore[no-untyped-def]
        from sqlalchemy import select

        vault = TokenVault(runtime.sealer)
        rows = await session.execute(
            select(Connection).where(
                Connection.organization_id == organization_id, Connection.deleted_at.is_(None)
            )
        )
        return {
            c.account_id: {
                "id": c.id,
                "user_id": c.user_id,
                "access_token": vault.access_token(c),
                "refresh_token": vault.refresh_token(c),
                "oauth_app_id": c.oauth_app_id,
                "integration_params": c.integration_params,
                "expires_at": c.expires_at,
                "scopes": c.scopes,
                "account_email": c.account_email,
                "tags": c.tags,
                "metadata": c.metadata_,
                "credentials": vault.credentials(c),
            }
            for c in rows.scalars()
        }

    return service.run_db(work)


def app_in_effect(service: ServiceProcess, organization_id: str, app_key: str) -> str | None:
    async def work(session, runtime):  # type: ignore[no-untyped-def]
        try:
            resolved = await OAuthAppService(session, runtime.sealer, runtime.catalog).resolve(
                organization_id, app_key
            )
        except ConnectorNotConfigured:
            return None
        return resolved.app.id

    return service.run_db(work)


def listed(service: ServiceProcess, tenant: Tenant) -> httpx.Response:
    response = web.get(service.api, params=tenant.org, headers=tenant.headers, timeout=30)
    assert response.status_code == 200, response.text
    return response


def test_good_lines_import_and_every_bad_line_is_reported_by_number(
    service: ServiceProcess, tmp_path: Path
) -> None:
    tenant = make_tenant(service)
    stranger = make_tenant(service)  # a member of another organization only
    first, second = record(tenant.user_id, "acct-1"), record(tenant.user_id, "acct-2")
    second.update(refresh_token=None, expires_at=None, scopes=[])
    again = record(tenant.user_id, "acct-1", account_email="renamed@example.test")
    cut_off = record(tenant.user_id, "bad-9")
    lines: list[dict[str, Any] | str] = [
        first,  # 1
        second,  # 2
        again,  # 3: the same account as line 1, so an update
        record("user_" + "0" * 32, "bad-4"),  # 4: no such user
        record(stranger.user_id, "bad-5"),  # 5: a user of another organization
        record(tenant.user_id, "bad-6", app_key="no-such-provider"),  # 6
        record(tenant.user_id, "bad-7", expires_at="next tuesday"),  # 7
        {k: v for k, v in record(tenant.user_id, "bad-8").items() if k != "access_token"},  # 8
        json.dumps(cut_off)[:-1],  # 9: not JSON (the closing brace is missing)
    ]
    result = cli(
        service, "connections", "import", str(write_lines(tmp_path / "in.jsonl", lines)),
        "--org", tenant.organization_id, "--json",
    )  # fmt: skip

    assert result.returncode == 1  # some lines failed
    report = json.loads(result.stdout)
    assert {k: report[k] for k in ("imported", "updated", "failed")} == {
        "imported": 2,
        "updated": 1,
        "failed": 6,
    }
    messages = {error["line"]: error["message"] for error in report["errors"]}
    assert list(messages) == [4, 5, 6, 7, 8, 9]
    for line, field in [(4, "user_id"), (5, "user_id"), (6, "app_key"), (7, "expires_at")]:
        assert messages[line].startswith(f"{field}: "), messages[line]
    assert messages[8] == "access_token: Field required"
    assert "not valid JSON" in messages[9]
    leaked = [s for s in secrets_in([*lines, cut_off]) if s in result.stdout + result.stderr]
    assert not leaked
    assert "6 lines not imported" in result.stderr

    imported = live_connections(service, tenant.organization_id)
    assert set(imported) == {"acct-1", "acct-2"}  # no bad line left anything behind
    assert live_connections(service, stranger.organization_id) == {}
    assert imported["acct-1"]["access_token"] == again["access_token"]
    assert imported["acct-1"]["refresh_token"] == again["refresh_token"]
    assert imported["acct-1"]["account_email"] == "renamed@example.test"
    assert imported["acct-2"]["access_token"] == second["access_token"]
    assert imported["acct-2"]["refresh_token"] is None
    # The fixture configured a service-wide app for the provider: that is the one in effect.
    global_app = app_in_effect(service, tenant.organization_id, PROVIDER_KEY)
    assert global_app is not None
    assert {c["oauth_app_id"] for c in imported.values()} == {global_app}

    body = listed(service, tenant)
    by_account = {item["account_id"]: item for item in body.json()}
    assert set(by_account) == {"acct-1", "acct-2"}
    assert by_account["acct-1"]["id"] == imported["acct-1"]["id"]
    assert by_account["acct-1"]["scopes"] == ["openid", "email"]
    assert by_account["acct-1"]["expires_at"].startswith("2030-01-01T00:00:00")
    assert by_account["acct-1"]["status"] == "active" and by_account["acct-1"]["is_active"]
    assert by_account["acct-2"]["expires_at"] is None
    assert not [s for s in secrets_in(lines) if s in body.text]


def test_reimporting_updates_the_same_connections(service: ServiceProcess, tmp_path: Path) -> None:
    tenant = make_tenant(service)
    lines: list[dict[str, Any] | str] = [
        record(tenant.user_id, "gh-1"),
        record(tenant.user_id, "gh-2"),
    ]
    path = write_lines(tmp_path / "in.jsonl", lines)
    first = cli_in_process(
        service, "connections", "import", str(path), "--org", tenant.organization_id
    )
    assert first.returncode == 0, first.stderr
    ids_before = {item["account_id"]: item["id"] for item in listed(service, tenant).json()}

    # An organization's own app now wins over the service-wide one.
    async def own_app(session, runtime):  # type: ignore[no-untyped-def]
        app = await OAuthAppService(session, runtime.sealer, runtime.catalog).configure(
            tenant.organization_id, PROVIDER_KEY, client_id="own", client_secret="own-secret"
        )
        return app.id

    org_app = service.run_db(own_app)
    fresh: list[dict[str, Any] | str] = [
        record(tenant.user_id, "gh-1", account_email="new-1@example.test"),
        record(tenant.user_id, "gh-2", refresh_token=None),
    ]
    second = cli_in_process(
        service, "connections", "import", str(write_lines(path, fresh)),
        "--org", tenant.organization_id,
    )  # fmt: skip

    assert second.returncode == 0, second.stderr
    assert "Imported 0, updated 2, failed 0." in second.stdout
    assert "Importing" in second.stderr and "2/2" in second.stderr  # the progress bar
    assert not [s for s in secrets_in(lines + fresh) if s in second.stdout + second.stderr]
    ids_after = {item["account_id"]: item["id"] for item in listed(service, tenant).json()}
    assert ids_after == ids_before  # updated in place, no duplicates
    now = live_connections(service, tenant.organization_id)
    assert now["gh-1"]["access_token"] == fresh[0]["access_token"]  # type: ignore[index]
    assert now["gh-1"]["account_email"] == "new-1@example.test"
    assert now["gh-2"]["access_token"] == fresh[1]["access_token"]  # type: ignore[index]
    # A line without a refresh token keeps the one the connection had, as a flow would.
    assert now["gh-2"]["refresh_token"] == lines[1]["refresh_token"]  # type: ignore[index]
    assert {c["oauth_app_id"] for c in now.values()} == {org_app}

    async def events(session, runtime):  # type: ignore[no-untyped-def]
        from sqlalchemy import select

        rows = await session.execute(
            select(ConnectionEvent.type)
            .where(ConnectionEvent.connection_id == ids_after["gh-1"])
            .order_by(ConnectionEvent.created_at)
        )
        return list(rows.scalars())

    assert service.run_db(events) == [EventType.CREATED, EventType.REAUTHORIZED]


def test_export_then_import_into_another_org_round_trips_the_tokens(
    service: ServiceProcess, tmp_path: Path
) -> None:
    email = f"mover-{secrets.token_hex(4)}@example.test"
    source = make_tenant(service, email=email)
    originals = [
        record(source.user_id, "acct-a"),
        record(source.user_id, "acct-b", refresh_token=None, expires_at=None),
        record(
            source.user_id, "acct-z", app_key="zendesk", integration_params={"subdomain": "acme"}
        ),
    ]

    async def seed(session, runtime):  # type: ignore[no-untyped-def]
        lines = [json.dumps(line).encode() for line in originals]
        report = await ConnectionImporter(session, runtime, source.organization_id).run(lines)
        assert report.imported == 3, report
        identities = IdentityService(session)
        target = await identities.create_organization("Target")
        await identities.create_user(email, target.id)  # the same user joins the target org
        return target.id

    target_org = service.run_db(seed)
    export = tmp_path / "connections.pcx"
    passphrase = {PASSPHRASE_VAR: "correct horse battery staple"}

    refused = cli_in_process(
        service, "connections", "export", str(export), "--org", source.organization_id,
        "--passphrase-env", "PC_TEST_UNSET_PASSPHRASE",
    )  # fmt: skip
    assert refused.returncode != 0 and not export.exists()
    assert "PC_TEST_UNSET_PASSPHRASE" in refused.stderr

    exported = cli_in_process(
        service, "connections", "export", str(export), "--org", source.organization_id,
        "--passphrase-env", PASSPHRASE_VAR, "--json", env=passphrase,
    )  # fmt: skip
    assert exported.returncode == 0, exported.stderr
    assert json.loads(exported.stdout) == {"exported": 3, "file": str(export)}
    content = export.read_bytes()
    assert content.startswith(MAGIC)
    assert stat.S_IMODE(export.stat().st_mode) == 0o600
    tokens = secrets_in(originals)  # type: ignore[arg-type]
    assert not [t for t in tokens if t.encode() in content]
    assert b"acct-a" not in content  # nothing readable, not even the account ids

    wrong = cli_in_process(
        service, "connections", "import", str(export), "--org", target_org,
        "--passphrase-env", PASSPHRASE_VAR, "--json", env={PASSPHRASE_VAR: "not the passphrase"},
    )  # fmt: skip
    assert wrong.returncode != 0 and wrong.stdout == ""
    assert "wrong passphrase" in wrong.stderr and "Traceback" not in wrong.stderr
    assert live_connections(service, target_org) == {}

    imported = cli_in_process(
        service, "connections", "import", str(export), "--org", target_org,
        "--passphrase-env", PASSPHRASE_VAR, "--json", env=passphrase,
    )  # fmt: skip
    assert imported.returncode == 0, imported.stderr
    assert json.loads(imported.stdout) == {"imported": 3, "updated": 0, "failed": 0, "errors": []}
    moved = live_connections(service, target_org)
    assert set(moved) == {"acct-a", "acct-b", "acct-z"}
    for line in originals:
        connection = moved[line["account_id"]]
        assert connection["user_id"] == source.user_id
        assert connection["access_token"] == line["access_token"]
        assert connection["refresh_token"] == line["refresh_token"]
        assert connection["scopes"] == line["scopes"]
        expected = line["expires_at"]
        assert (connection["expires_at"] and connection["expires_at"].isoformat()) == (
            expected and expected.replace("Z", "+00:00")
        )
    assert moved["acct-z"]["integration_params"] == {"subdomain": "acme"}
    # The source organization still has its own connections, untouched.
    assert set(live_connections(service, source.organization_id)) == {"acct-a", "acct-b", "acct-z"}


def test_tags_and_metadata_travel_through_export_and_import(
    service: ServiceProcess, tmp_path: Path
) -> None:
    email = f"labels-{secrets.token_hex(4)}@example.test"
    source = make_tenant(service, email=email)
    labelled = record(
        source.user_id,
        "acct-t",
        tags={"team": "sales", "env": "prod"},
        metadata={"crm": {"id": 7, "stages": ["lead", "won"]}, "note": "é"},
    )
    too_many = record(source.user_id, "acct-x", tags={f"k{n}": "v" for n in range(21)})
    lines: list[dict[str, Any] | str] = [labelled, record(source.user_id, "acct-plain"), too_many]
    first = cli_in_process(
        service, "connections", "import", str(write_lines(tmp_path / "in.jsonl", lines)),
        "--org", source.organization_id, "--json",
    )  # fmt: skip
    report = json.loads(first.stdout)
    assert (report["imported"], report["failed"]) == (2, 1)
    assert report["errors"][0]["line"] == 3 and "at most 20 tags" in report["errors"][0]["message"]
    by_account = {item["account_id"]: item for item in listed(service, source).json()}
    assert by_account["acct-t"]["tags"] == labelled["tags"]
    assert by_account["acct-t"]["metadata"] == labelled["metadata"]
    assert by_account["acct-plain"]["tags"] == {} and by_account["acct-plain"]["metadata"] == {}

    async def target(session, runtime):  # type: ignore[no-untyped-def]
        identities = IdentityService(session)
        organization = await identities.create_organization("Labels target")
        await identities.create_user(email, organization.id)
        return organization.id

    target_org = service.run_db(target)
    export = tmp_path / "labels.pcx"
    passphrase = {PASSPHRASE_VAR: "labels travel too, sealed"}
    exported = cli_in_process(
        service, "connections", "export", str(export), "--org", source.organization_id,
        "--passphrase-env", PASSPHRASE_VAR, env=passphrase,
    )  # fmt: skip
    assert exported.returncode == 0, exported.stderr
    imported = cli_in_process(
        service, "connections", "import", str(export), "--org", target_org,
        "--passphrase-env", PASSPHRASE_VAR, "--json", env=passphrase,
    )  # fmt: skip
    assert json.loads(imported.stdout)["imported"] == 2, imported.stdout
    moved = live_connections(service, target_org)
    assert moved["acct-t"]["tags"] == labelled["tags"]
    assert moved["acct-t"]["metadata"] == labelled["metadata"]
    assert not moved["acct-plain"]["tags"] and not moved["acct-plain"]["metadata"]

    # Re-importing: a line without tags or metadata keeps the connection's; one with replaces.
    again: list[dict[str, Any] | str] = [
        record(source.user_id, "acct-t"),
        record(source.user_id, "acct-plain", tags={"new": "yes"}, metadata={}),
    ]
    second = cli_in_process(
        service, "connections", "import", str(write_lines(tmp_path / "again.jsonl", again)),
        "--org", source.organization_id, "--json",
    )  # fmt: skip
    assert json.loads(second.stdout)["updated"] == 2, second.stdout
    now = live_connections(service, source.organization_id)
    assert now["acct-t"]["tags"] == labelled["tags"]
    assert now["acct-t"]["metadata"] == labelled["metadata"]
    assert now["acct-plain"]["tags"] == {"new": "yes"}


def end_user_record(end_user_id: str, account_id: str, **fields: Any) -> dict[str, Any]:
    line = record("unused", account_id, **fields)
    del line["user_id"]
    return {"end_user_id": end_user_id, **line}


def test_end_users_connections_travel_by_the_platforms_id(
    service: ServiceProcess, tmp_path: Path
) -> None:
    """SPEC §8: import and export name an end user's connection by ``end_user_id``; the end
    user is created on first use, in the organization imported into."""
    source = make_tenant(service)
    platform = make_organization_key(service, source.organization_id)
    lines: list[dict[str, Any] | str] = [
        end_user_record("customer:42", "acct-eu"),
        {**end_user_record("customer:43", "acct-both"), "user_id": source.user_id},
        end_user_record("customer:42", "acct-missing") | {"end_user_id": None},
        end_user_record("...", "acct-dots"),
    ]
    first = cli_in_process(
        service, "connections", "import", str(write_lines(tmp_path / "eu.jsonl", lines)),
        "--org", source.organization_id, "--json",
    )  # fmt: skip
    report = json.loads(first.stdout)
    assert (report["imported"], report["failed"]) == (1, 3), report
    messages = {error["line"]: error["message"] for error in report["errors"]}
    assert "user_id (a member) or end_user_id (an end user)" in messages[2]
    assert "user_id (a member) or end_user_id (an end user)" in messages[3]
    assert "not only dots" in messages[4]
    # The service key reaches it as that end user's; another end user sees nothing.
    customer = platform.acting_for("customer:42")
    [shown] = web.get(service.api, params=customer.org, headers=customer.headers).json()
    assert (shown["account_id"], shown["end_user_id"]) == ("acct-eu", "customer:42")
    stranger = platform.acting_for("customer:99")
    assert web.get(service.api, params=stranger.org, headers=stranger.headers).json() == []

    # Re-importing the same line updates the end user's connection.
    again = cli_in_process(
        service, "connections", "import",
        str(write_lines(tmp_path / "again.jsonl", [end_user_record("customer:42", "acct-eu")])),
        "--org", source.organization_id, "--json",
    )  # fmt: skip
    assert (json.loads(again.stdout)["imported"], json.loads(again.stdout)["updated"]) == (0, 1)

    # The export names the end user, not its internal user; imported elsewhere, the end user
    # is made in the target organization.
    export = tmp_path / "eu.pcx"
    passphrase = {PASSPHRASE_VAR: "end users travel by their platform id"}
    exported = cli_in_process(
        service, "connections", "export", str(export), "--org", source.organization_id,
        "--passphrase-env", PASSPHRASE_VAR, env=passphrase,
    )  # fmt: skip
    assert exported.returncode == 0, exported.stderr
    target = make_tenant(service)
    imported = cli_in_process(
        service, "connections", "import", str(export), "--org", target.organization_id,
        "--passphrase-env", PASSPHRASE_VAR, "--json", env=passphrase,
    )  # fmt: skip
    assert json.loads(imported.stdout)["imported"] == 1, imported.stdout
    there = make_organization_key(service, target.organization_id).acting_for("customer:42")
    [moved] = web.get(service.api, params=there.org, headers=there.headers).json()
    assert (moved["account_id"], moved["end_user_id"]) == ("acct-eu", "customer:42")
    assert web.get(service.api, params=target.org, headers=target.headers).json() == []


def test_credentials_connections_travel_sealed_and_work_after_the_move(
    service: ServiceProcess, tmp_path: Path, credentials_api: CredentialsApi
) -> None:
    """SPEC §10 connections (api_key, basic, client credentials, jwt_bearer) export with their
    fields, mode and label, inside the envelope only, and import into connections that hand
    out the same credentials and tokens; a minting line without a token mints on first use."""
    email = f"creds-{secrets.token_hex(4)}@example.test"
    source = make_tenant(service, email=email)
    submitted = {
        KEY_API: {"api_key": credentials_api.api_key},
        BASIC_API: {"email": EMAIL, "api_token": credentials_api.api_token},
        CC_API: {"app_id": credentials_api.client_id, "app_secret": credentials_api.client_secret},
        JWT_API: {"client_email": SERVICE_ACCOUNT, "private_key": credentials_api.private_key},
    }
    with web.client(base_url=service.api, timeout=30) as api:
        made = {}
        for app_key, fields in submitted.items():
            response = submit(api, source, app_key, fields, name=f"{app_key} label")
            assert response.status_code == 201, response.text
            made[app_key] = response.json()
        handed = {key: hand_out(api, source, made[key]["id"]).json() for key in submitted}

    async def join(session, runtime):  # type: ignore[no-untyped-def]
        identities = IdentityService(session)
        organization = await identities.create_organization("Credentials target")
        await identities.create_user(email, organization.id)  # the same user joins it
        return organization.id

    # The same user, key and all, in the organization imported into.
    target = Tenant(service.run_db(join), source.user_id, source.api_key, source.api_key_id)
    export = tmp_path / "credentials.pcx"
    passphrase = {PASSPHRASE_VAR: "credentials are sealed like tokens"}
    exported = cli_in_process(
        service, "connections", "export", str(export), "--org", source.organization_id,
        "--passphrase-env", PASSPHRASE_VAR, "--json", env=passphrase,
    )  # fmt: skip
    assert exported.returncode == 0, exported.stderr
    assert json.loads(exported.stdout)["exported"] == 4
    content = export.read_bytes()
    values = [v for fields in submitted.values() for v in fields.values() if v != EMAIL]
    values += [body["access_token"] for body in handed.values() if body["access_token"]]
    assert not [v for v in values if v.encode() in content]
    assert b"BEGIN PRIVATE KEY" not in content

    imported = cli_in_process(
        service, "connections", "import", str(export), "--org", target.organization_id,
        "--passphrase-env", PASSPHRASE_VAR, "--json", env=passphrase,
    )  # fmt: skip
    assert imported.returncode == 0, imported.stderr
    assert json.loads(imported.stdout) == {"imported": 4, "updated": 0, "failed": 0, "errors": []}
    assert not [v for v in values if v in imported.stdout + imported.stderr]

    with web.client(base_url=service.api, timeout=30) as api:
        moved = {item["app_key"]: item for item in listed(service, target).json()}
        assert set(moved) == set(submitted)
        for app_key, original in made.items():
            item = moved[app_key]
            for field in ("account_id", "auth_mode", "credential_fields", "credential_name"):
                assert item[field] == original[field], (app_key, field)
            assert item["scopes"] == original["scopes"], app_key
            answer = hand_out(api, target, item["id"])
            assert answer.status_code == 200, answer.text
            body = answer.json()
            assert body["auth_mode"] == handed[app_key]["auth_mode"]
            assert body["credentials"] == handed[app_key]["credentials"]
            # The minted token moved too: handed out as it is, not minted again.
            assert body["access_token"] == handed[app_key]["access_token"], app_key
            # The stored credentials work at the provider: the check call passes with them.
            tested = api.post(f"/{item['id']}/test", params=target.org, headers=target.headers)
            assert tested.status_code == 200 and tested.json()["success"], (app_key, tested.text)
        # Every field opens from the imported row, sealed under the target row's id.
        rows = live_connections(service, target.organization_id)
        assert {moved[key]["account_id"]: fields for key, fields in submitted.items()} == {
            account: row["credentials"] for account, row in rows.items()
        }

        # A hand-written client credentials line without a token: minted at first hand-out.
        mints = credentials_api.mints["client_credentials"]
        line = {
            "user_id": source.user_id,
            "app_key": CC_API,
            "account_id": "acct-hand-written",
            "auth_mode": "oauth2_client_credentials",
            "credentials": submitted[CC_API],
        }
        written = cli_in_process(
            service, "connections", "import", str(write_lines(tmp_path / "cc.jsonl", [line])),
            "--org", source.organization_id, "--json",
        )  # fmt: skip
        assert json.loads(written.stdout)["imported"] == 1, written.stdout
        [fresh] = [
            item for item in listed(service, source).json()
            if item["account_id"] == "acct-hand-written"
        ]  # fmt: skip
        minted = hand_out(api, source, fresh["id"]).json()
        assert credentials_api.minted[minted["access_token"]] == "acct-client"
        assert credentials_api.mints["client_credentials"] == mints + 1


def test_credentials_lines_must_fit_their_provider(
    service: ServiceProcess, tmp_path: Path, credentials_api: CredentialsApi
) -> None:
    tenant = make_tenant(service)
    key = credentials_api.api_key
    base = {"user_id": tenant.user_id, "account_id": "acct-c"}
    lines: list[dict[str, Any] | str] = [
        {**base, "app_key": KEY_API, "auth_mode": "api_key", "credentials": {"api_key": key}},
        {**base, "app_key": KEY_API, "access_token": key},  # 2: an OAuth line for a key API
        {**base, "app_key": KEY_API, "auth_mode": "api_key", "credentials": {"wrong": key}},
        {**base, "app_key": KEY_API, "auth_mode": "api_key"},  # 4: no credentials
        {  # 5: a key has no refresh token
            **base,
            "app_key": KEY_API,
            "auth_mode": "api_key",
            "credentials": {"api_key": key},
            "refresh_token": key,
        },
        {**base, "app_key": PROVIDER_KEY, "access_token": key, "credentials": {"a": key}},
        {  # 7: a private key that does not load
            **base,
            "app_key": JWT_API,
            "auth_mode": "jwt_bearer",
            "credentials": {"client_email": SERVICE_ACCOUNT, "private_key": "not a key"},
        },
    ]
    result = cli_in_process(
        service, "connections", "import", str(write_lines(tmp_path / "c.jsonl", lines)),
        "--org", tenant.organization_id, "--json",
    )  # fmt: skip
    report = json.loads(result.stdout)
    assert (report["imported"], report["failed"]) == (1, 6), report
    messages = {error["line"]: error["message"] for error in report["errors"]}
    assert "auth_mode: keyapi connects with api_key" in messages[2]
    assert "credentials.wrong" not in messages[3] and "not fields of keyapi: wrong" in messages[3]
    assert "credentials: required for auth_mode api_key" in messages[4]
    assert "refresh_token: auth_mode api_key has none" in messages[5]
    assert "credentials: only a credentials mode's connection has them" in messages[6]
    assert "private_key must be a PEM private key" in messages[7]
    assert key not in result.stdout + result.stderr
