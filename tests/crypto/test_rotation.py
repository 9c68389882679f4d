"""`connectors keys rotate`: every sealed secret moves to the newest key, beside live writers.

Each test gets its own database (SQLite or PostgreSQL, as the `service` it copies its settings
from): rotating the shared test database would strand the shared service on the old key.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from typer.testing import CliRunner

from personal_connectors.apps.service import OAuthAppService
from personal_connectors.cli.main import app
from personal_connectors.crypto.aead import Sealer, associated_data
from personal_connectors.crypto.keyring import KeyRing, generate_key, key_id_of, parse_keys
from personal_connectors.flows.repository import FlowRepository
from personal_connectors.flows.service import FlowService
from personal_connectors.flows.state import state_hash
from personal_connectors.keys.rotation import SEALED_TABLES, KeyRotator, Outcome
from personal_connectors.models import Connection, OAuthApp, WebhookEndpoint
from personal_connectors.oauth.client import TokenGrant
from personal_connectors.oauth.identity import AccountIdentity
from personal_connectors.portability.importer import ConnectionImporter
from personal_connectors.storage.migrations import upgrade
from personal_connectors.tokens.vault import TokenVault
from personal_connectors.webhooks.service import WebhookService, open_secret
from tests.conftest import CLIENT_SECRET, PROVIDER_KEY, make_tenant
from tests.support import web
from tests.support.oidc import free_port
from tests.support.service import (
    TEST_ENCRYPTION_KEY,
    ServiceProcess,
    create_postgres_database,
    drop_postgres_database,
)

KEY_A = TEST_ENCRYPTION_KEY


def key_id(key: str) -> str:
    return key_id_of(base64.b64decode(key))


@contextmanager
def own_database(service: ServiceProcess, tmp_path: Path) -> Iterator[ServiceProcess]:
    """A service (not started) with the shared one's settings but a database of its own."""
    port = free_port()
    env = {
        **service.env,
        "CONNECTORS_DATA_DIR": str(tmp_path / "data"),
        "CONNECTORS_BASE_URL": f"http://127.0.0.1:{port}",
        "CONNECTORS_ALLOWED_RETURN_ORIGINS": f"http://127.0.0.1:{port}",
        "CONNECTORS_ENCRYPTION_KEYS": KEY_A,
    }
    database_url = None
    if "CONNECTORS_DATABASE_URL" in env:
        database_url = env["CONNECTORS_DATABASE_URL"] = create_postgres_database()
    proc = ServiceProcess(port, env, tmp_path / "service.log")
    upgrade(proc.settings())
    try:
        yield proc
    finally:
        proc.stop()
        if database_url:
            drop_postgres_database(database_url)


def with_keys(proc: ServiceProcess, keys: str) -> ServiceProcess:
    return ServiceProcess(
        proc.port, {**proc.env, "CONNECTORS_ENCRYPTION_KEYS": keys}, proc.log_path
    )


def rotate(proc: ServiceProcess, *args: str) -> dict[str, Any]:
    result = CliRunner().invoke(app, ["keys", "rotate", "--json", *args], env=proc.env)
    assert result.exit_code == 0, result.stderr
    return dict(json.loads(result.stdout))


def import_lines(proc: ServiceProcess, organization_id: str, lines: list[dict[str, Any]]) -> None:
    async def work(session, runtime):  # type: ignore[no-untyped-def]
        raw = [json.dumps(line).encode() for line in lines]
        report = await ConnectionImporter(session, runtime, organization_id).run(raw)
        assert report.imported == len(lines), report

    proc.run_db(work)


def line(user_id: str, account_id: str) -> dict[str, Any]:
    return {
        "user_id": user_id,
        "app_key": PROVIDER_KEY,
        "account_id": account_id,
        "access_token": f"access-{account_id}-{generate_key()}",
        "refresh_token": f"refresh-{account_id}-{generate_key()}",
        "expires_at": "2030-01-01T00:00:00Z",
    }


def test_rotation_moves_every_secret_to_the_new_key(
    service: ServiceProcess, tmp_path: Path
) -> None:
    key_b = generate_key()
    with own_database(service, tmp_path) as on_a:
        on_a.start()
        tenant = make_tenant(on_a)
        lines = [line(tenant.user_id, "acct-1"), line(tenant.user_id, "acct-2")]

        async def configure_apps(session, runtime):  # type: ignore[no-untyped-def]
            apps = OAuthAppService(session, runtime.sealer, runtime.catalog)
            await apps.configure(None, PROVIDER_KEY, client_id="c", client_secret=CLIENT_SECRET)
            await apps.configure(
                tenant.organization_id, "github", client_id="g", client_secret="org-gh-secret"
            )
            hooks = WebhookService(session, runtime.sealer, runtime.settings)
            issued = await hooks.create(tenant.organization_id, "https://hooks.example.test/in")
            await session.commit()
            return issued.secret

        webhook_secret = on_a.run_db(configure_apps)
        import_lines(on_a, tenant.organization_id, lines)
        with web.client(base_url=on_a.api, headers=tenant.headers, timeout=30) as api:
            flows = [
                api.post("/authorize", params=tenant.org, json=body).json()["state"]
                for body in (
                    {"connector_type": PROVIDER_KEY},
                    {"connector_type": PROVIDER_KEY, "completion": "explicit"},
                )
            ]
        pending_state, held_state = flows

        async def hold_a_grant(session, runtime):  # type: ignore[no-untyped-def]
            # What the callback does in explicit completion; the real provider only redirects to
            # the shared service's port, so the grant is put in place the way the callback does.
            flow = await FlowRepository(session).by_state_hash(state_hash(held_state))
            await FlowService(session, runtime)._hold_grant(
                flow,
                TokenGrant("held-access", "held-refresh", "Bearer", None, ["openid"]),
                AccountIdentity("held-account", "held@example.test", "Held"),
            )

        on_a.run_db(hold_a_grant)
        on_a.stop()

        both = with_keys(on_a, f"{key_b},{KEY_A}")
        # Batches of 2 across 7 rows: the keyset paging is exercised, not just one batch.
        assert rotate(both, "--batch-size", "2") == {"rotated": 7, "skipped": 0, "remaining": 0}

        only_b = with_keys(on_a, key_b)

        async def read_everything(session, runtime):  # type: ignore[no-untyped-def]
            key_ids = {}
            for table in SEALED_TABLES:
                rows = await session.execute(
                    select(table.table.c.key_id, func.count()).group_by(table.table.c.key_id)
                )
                key_ids[table.name] = dict(rows.all())
            vault = TokenVault(runtime.sealer)
            connections = (await session.execute(select(Connection))).scalars().all()
            tokens = {
                c.account_id: (vault.access_token(c), vault.refresh_token(c), c.version)
                for c in connections
            }
            apps = OAuthAppService(session, runtime.sealer, runtime.catalog)
            secrets = {
                a.app_key: apps.credentials(a).client_secret
                for a in (await session.execute(select(OAuthApp))).scalars()
            }
            pending = await FlowRepository(session).by_state_hash(state_hash(pending_state))
            verifier = runtime.sealer.open(
                pending.key_id,
                pending.code_verifier_ct,
                associated_data("flows", pending.id, "code_verifier"),
            )
            held = await FlowRepository(session).by_state_hash(state_hash(held_state))
            grant, identity = FlowService(session, runtime)._held_grant(held)
            webhook_secrets = [
                open_secret(runtime.sealer, e)
                for e in (await session.scalars(select(WebhookEndpoint)))
            ]
            return (
                key_ids,
                tokens,
                secrets,
                verifier,
                (grant.access_token, identity.account_id),
                webhook_secrets,
            )

        key_ids, tokens, secrets, verifier, held, webhook_secrets = only_b.run_db(read_everything)
        assert key_ids == {"connections": {key_id(key_b): 2}, "oauth_apps": {key_id(key_b): 2},
                           "flows": {key_id(key_b): 2}, "webhook_endpoints": {key_id(key_b): 1}}  # fmt: skip
        assert webhook_secrets == [webhook_secret]
        assert tokens == {
            x["account_id"]: (x["access_token"], x["refresh_token"], 1) for x in lines
        }  # the version a concurrent refresh compares against is untouched
        assert secrets == {PROVIDER_KEY: CLIENT_SECRET, "github": "org-gh-secret"}
        assert len(verifier) >= 43
        assert held == ("held-access", "held-account")

        assert rotate(both) == {"rotated": 0, "skipped": 0, "remaining": 0}

        # A service that knows only the new key serves everything.
        only_b.start()
        try:
            with web.client(base_url=only_b.api, headers=tenant.headers, timeout=30) as api:
                listed = {c["account_id"]: c["id"] for c in api.get("", params=tenant.org).json()}
                issued = api.post(f"/{listed['acct-1']}/token", params=tenant.org)
                assert issued.status_code == 200, issued.text
                assert issued.json()["access_token"] == lines[0]["access_token"]
                completed = api.post(
                    "/complete-oauth", params=tenant.org, json={"state_token": held_state}
                )
                assert completed.status_code == 200 and completed.json()["connected"] is True
                started = api.post(
                    "/authorize", params=tenant.org, json={"connector_type": "github"}
                )
                assert started.status_code == 200, started.text  # the org app's secret opened

        finally:
            only_b.stop()  # (it is not the fixture's process: stop it here)


def test_a_row_rewritten_between_read_and_update_is_left_alone(
    service: ServiceProcess, tmp_path: Path
) -> None:
    key_b, key_c = generate_key(), generate_key()
    with own_database(service, tmp_path) as on_a:
        tenant = make_tenant(on_a)
        lines = [line(tenant.user_id, f"acct-{n}") for n in (1, 2, 3)]
        import_lines(on_a, tenant.organization_id, lines)
        # A row under a key nobody configured any more cannot be rotated.
        import_lines(with_keys(on_a, key_c), tenant.organization_id, [line(tenant.user_id, "lost")])
        both = with_keys(on_a, f"{key_b},{KEY_A}")
        old_key_only = Sealer(parse_keys(KEY_A))

        async def race(session, runtime):  # type: ignore[no-untyped-def]
            rotator = KeyRotator(session, runtime.sealer)
            read = await rotator.pending(SEALED_TABLES[0])  # every connection, as first seen
            async with runtime.sessions() as other:
                rows = {
                    c.account_id: c for c in (await other.execute(select(Connection))).scalars()
                }
                untouched = (rows["acct-3"].version, rows["acct-3"].updated_at)
                # Between the read and the update: a refresh on an upgraded instance (newest
                # key), and one on an instance still configured with the old key only.
                TokenVault(runtime.sealer).store(
                    rows["acct-1"], TokenGrant("refreshed-1", None, "Bearer", None, [])
                )
                TokenVault(old_key_only).store(
                    rows["acct-2"], TokenGrant("refreshed-2", None, "Bearer", None, [])
                )
                await other.commit()
            names = {c.id: name for name, c in rows.items()}
            outcomes = {names[row.id]: await rotator.rotate_row(row) for row in read}
            await session.commit()
            session.expire_all()
            after = {c.account_id: c for c in (await session.execute(select(Connection))).scalars()}
            vault = TokenVault(runtime.sealer)
            state = {
                name: (vault.access_token(c), vault.refresh_token(c), c.key_id)
                for name, c in after.items()
                if name != "lost"
            }
            unchanged = (after["acct-3"].version, after["acct-3"].updated_at) == untouched
            remaining = await rotator.remaining()
            report = await rotator.run()
            return outcomes, state, unchanged, remaining, report

        outcomes, state, unchanged, remaining, report = both.run_db(race)

    assert outcomes == {
        "acct-1": Outcome.SKIPPED,  # already on the new key, by its refresher
        "acct-2": Outcome.SKIPPED,  # rewritten on the old key: left for the next pass
        "acct-3": Outcome.ROTATED,
        "lost": Outcome.UNREADABLE,
    }
    new, old = key_id(key_b), key_id(KEY_A)
    assert state == {
        "acct-1": ("refreshed-1", lines[0]["refresh_token"], new),  # the refresher's write stands
        "acct-2": ("refreshed-2", lines[1]["refresh_token"], old),
        "acct-3": (lines[2]["access_token"], lines[2]["refresh_token"], new),
    }
    assert unchanged  # neither version nor updated_at moved for a re-encryption
    assert remaining == 2  # acct-2 and the unreadable row
    # The next run finishes acct-2; the unreadable row is reported and stays.
    assert (report.rotated, report.unreadable, report.remaining) == (1, 1, 1)
    assert report.as_dict() == {"rotated": 1, "skipped": 1, "remaining": 1}


def test_generate_prints_a_usable_new_key() -> None:
    runner = CliRunner()
    first = runner.invoke(app, ["keys", "generate", "--json"])
    second = runner.invoke(app, ["keys", "generate"])
    assert first.exit_code == 0 and second.exit_code == 0
    key = json.loads(first.stdout)["key"]
    assert len(parse_keys(key).keys[0]) == 32
    assert second.stdout.strip() != key and len(parse_keys(second.stdout.strip()).keys) == 1
    assert "keys rotate" in second.stderr  # the how-to goes to stderr, the key alone to stdout
    assert KeyRing((base64.b64decode(key),)).current_id == key_id(key)
