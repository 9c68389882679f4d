"""`connectors refresher`: tokens refreshed before anyone asks, by the real command against the
real provider (refresh-token rotation with reuse detection, so a double refresh kills a grant).

Due connections get exactly one refresh whoever else runs, connections not due are left alone,
idle refresh tokens are kept alive, a rejected grant becomes needs_reauth, and SIGTERM lets the
refreshes in flight finish and hands the rest back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
from datetime import datetime, timedelta
from pathlib import Path

import httpx
from sqlalchemy import select

from personal_connectors.apps.service import OAuthAppService
from personal_connectors.models import Connection, utcnow
from personal_connectors.refresher.repository import Claimed
from personal_connectors.refresher.service import BackgroundRefresher
from personal_connectors.refresher.writes import BatchedTokenWriter
from personal_connectors.tokens import lease
from personal_connectors.tokens.refresh import Refresher
from personal_connectors.tokens.repository import TokenWrite, write_tokens
from tests.conftest import CLIENT_ID, CLIENT_SECRET, FAULTY_KEY, PROVIDER_KEY, Tenant
from tests.support import web
from tests.support.db import event_types, set_expiry, stored_tokens, update_connection
from tests.support.fault_proxy import FaultProxy
from tests.support.oidc import OidcProvider, free_port, token_request
from tests.support.outputs import RECORD
from tests.support.service import ServiceProcess
from tests.tokens.conftest import (
    TOKEN_PATH,
    connect_accounts,
    refresher_command,
    refresher_env,
    run_refresher_once,
    set_due,
    states,
    token,
    wait_for,
)


def refresh_at_provider(oidc: OidcProvider, refresh_token: str | None) -> int:
    """The status the provider gives a refresh with ``refresh_token`` (200: the grant lives)."""
    assert refresh_token is not None
    data = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    return token_request(oidc, CLIENT_ID, CLIENT_SECRET, data).status_code


def test_a_due_connection_is_refreshed_and_one_not_due_is_left_alone(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess, oidc: OidcProvider
) -> None:
    due, idle, fresh = connect_accounts(api, tenant, 3)
    before = {cid: stored_tokens(service, cid) for cid in (due, idle, fresh)}
    # Outside the provider's 300 s margin (the token path would not refresh it yet), inside
    # the refresher's 10-minute window.
    set_due(service, [due], 450)
    # Unused for 25 hours although its access token is still good for an hour.
    long_ago = utcnow() - timedelta(hours=25)
    update_connection(service, idle, created_at=long_ago, last_refreshed_at=long_ago)

    counts = run_refresher_once(service, tenant.organization_id)

    assert counts["refreshed"] == 2 and counts["needs_reauth"] == 0
    after = {cid: stored_tokens(service, cid) for cid in (due, idle, fresh)}
    for cid in (due, idle):
        assert after[cid][0] != before[cid][0] and after[cid][1] != before[cid][1]
        assert event_types(service, cid).count("connection.refreshed") == 1
    assert after[fresh] == before[fresh]
    assert event_types(service, fresh) == ["connection.created"]
    got = states(service, [due, idle, fresh])
    assert [got[cid].version for cid in (due, idle, fresh)] == [2, 2, 1]
    assert all(state.lease_owner is None for state in got.values())
    # What the token endpoint hands out now is the refreshed token, without another refresh.
    response = token(api, tenant, due)
    assert response.status_code == 200 and response.json()["access_token"] == after[due][0]
    # The grants are alive at the provider: the stored refresh tokens are the current ones.
    assert refresh_at_provider(oidc, after[due][1]) == 200
    assert refresh_at_provider(oidc, after[idle][1]) == 200


def test_idle_refresh_tokens_are_taken_up_longest_unused_first(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess
) -> None:
    # Unused for 25, 49 and 73 hours; their access tokens expire the other way round, so an
    # order by expiry (the expiring claim's) would take them up the other way round too.
    ids = connect_accounts(api, tenant, 3)
    for hours, connection_id in zip((25, 49, 73), ids, strict=True):
        unused_since = utcnow() - timedelta(hours=hours)
        update_connection(
            service,
            connection_id,
            created_at=unused_since,
            last_refreshed_at=unused_since,
            expires_at=utcnow() + timedelta(hours=hours),
        )

    # One refresh at a time: each claim takes one row, the longest unused.
    counts = run_refresher_once(service, tenant.organization_id, "--concurrency", "1")

    assert counts["refreshed"] == 3
    refreshed = last_refreshed(service, ids)
    assert sorted(ids, key=refreshed.__getitem__) == list(reversed(ids))


def last_refreshed(service: ServiceProcess, ids: list[str]) -> dict[str, datetime]:
    async def work(session, runtime):  # type: ignore[no-untyped-def]
        rows = await session.execute(
            select(Connection.id, Connection.last_refreshed_at).where(Connection.id.in_(ids))
        )
        return dict(rows.all())

    found: dict[str, datetime] = service.run_db(work)
    return found


def test_a_batch_stores_only_the_writes_whose_row_is_as_their_refresh_read_it(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess
) -> None:
    """The refresher's batches (several writes to a transaction) keep each write's own
    compare-and-swap: a row at another version or under another lease is left alone, and the
    writes around it are stored."""
    ids = connect_accounts(api, tenant, 4)
    for cid in ids:
        update_connection(service, cid, refresh_lease_owner="ours")
    update_connection(service, ids[1], version=2)  # someone else's refresh got there first
    update_connection(service, ids[2], refresh_lease_owner="theirs")  # our lease expired

    def write(cid: str) -> TokenWrite:
        values = {"version": 2, "refresh_lease_owner": None, "status_reason": "batched"}
        return TokenWrite(cid, 1, "ours", values, [])

    async def work(session, runtime):  # type: ignore[no-untyped-def]
        return await write_tokens(session, [write(cid) for cid in ids])

    assert service.run_db(work) == [True, False, False, True]
    got = states(service, ids)
    assert [got[cid].status_reason for cid in ids] == ["batched", None, None, "batched"]
    assert [got[cid].lease_owner for cid in ids] == [None, "ours", "theirs", None]


def test_a_batch_writer_cancelled_midway_answers_every_waiting_refresh(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess
) -> None:
    """Its task cancelled while the session closes after the commit (the loop torn down): the
    refreshes in that batch learn that they won, and the one still queued gets an error, so
    none waits forever."""
    ids = connect_accounts(api, tenant, 3)
    for cid in ids:
        update_connection(service, cid, refresh_lease_owner="ours")
    values = {"version": 2, "refresh_lease_owner": None, "status_reason": "batched"}

    async def work(session, runtime):  # type: ignore[no-untyped-def]
        closing = asyncio.Event()

        def slow_to_close():  # type: ignore[no-untyped-def]
            slow = runtime.sessions()
            close = slow.close

            async def close_slowly() -> None:
                closing.set()
                await asyncio.sleep(0.2)
                await close()

            slow.close = close_slowly
            return slow

        writer = BatchedTokenWriter(slow_to_close)
        first = [
            asyncio.ensure_future(writer(TokenWrite(c, 1, "ours", values, []))) for c in ids[:2]
        ]
        await closing.wait()
        queued = asyncio.ensure_future(writer(TokenWrite(ids[2], 1, "ours", values, [])))
        await asyncio.sleep(0)
        for task in writer._tasks:
            task.cancel()
        answers = await asyncio.wait_for(
            asyncio.gather(*first, queued, return_exceptions=True), timeout=10
        )
        return [a if isinstance(a, bool) else type(a).__name__ for a in answers]

    assert service.run_db(work) == [True, True, "RuntimeError"]


def test_a_refresh_cancelled_while_it_waits_for_its_provider_slot_hands_its_lease_back(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess
) -> None:
    """The shutdown drain cancels what is still waiting for a provider slot: nothing was sent
    for it, so its row is released at once rather than when the lease expires."""
    [cid] = connect_accounts(api, tenant, 1)

    async def work(session, runtime):  # type: ignore[no-untyped-def]
        refresher = BackgroundRefresher(runtime, provider_concurrency=1)
        connection = await session.get(Connection, cid)
        assert await lease.try_acquire(session, cid, refresher.owner, 60)
        refresher._slots[connection.app_key] = asyncio.Semaphore(0)  # every slot taken
        waiting = asyncio.ensure_future(refresher._refresh(Claimed(connection)))
        await asyncio.sleep(0)  # one turn of the loop: it blocks on the slot at once
        leased = await session.scalar(
            select(Connection.refresh_lease_owner).where(Connection.id == cid)
        )
        waiting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiting
        await session.rollback()  # a fresh read
        after = await session.get(Connection, cid, populate_existing=True)
        return (
            leased == refresher.owner,
            after.refresh_lease_owner,
            after.rotation_uncertain_since,
            waiting.cancelled(),
        )

    held_while_waiting, owner_after, uncertain_since, cancelled = service.run_db(work)
    assert cancelled and owner_after is None
    assert held_while_waiting
    assert uncertain_since is None  # nothing was sent: no doubt about its refresh token


def test_a_refresh_whose_write_fails_releases_its_lease_at_once(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess
) -> None:
    """A caller's refresh writes in its own transaction; when that write fails outright there is
    no batch left that could still land, so the lease goes back at once instead of keeping
    every other caller waiting until it expires."""
    [cid] = connect_accounts(api, tenant, 1)

    async def work(session, runtime):  # type: ignore[no-untyped-def]
        owner = lease.new_owner()
        assert await lease.try_acquire(session, cid, owner, 60)
        connection = await session.get(Connection, cid)

        async def credentials(app_id):  # type: ignore[no-untyped-def]
            apps = OAuthAppService(session, runtime.sealer, runtime.catalog)
            resolved = await apps.by_id(app_id)
            return resolved.credentials if resolved is not None else None

        async def failing_write(write):  # type: ignore[no-untyped-def]
            raise ConnectionResetError("the database went away")

        with contextlib.suppress(ConnectionResetError):
            await Refresher(runtime)._lead(
                session, connection, connection.version, True, owner, credentials, failing_write
            )
        await session.rollback()
        return (await session.get(Connection, cid, populate_existing=True)).refresh_lease_owner

    assert service.run_db(work) is None


def test_an_app_whose_secret_cannot_be_opened_is_skipped_and_its_rows_handed_back(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess
) -> None:
    """An encryption key the operator removed must not stall the rest of a claim, nor turn the
    app's connections into needs_reauth: its rows are released and rest until the next pass."""
    [cid] = connect_accounts(api, tenant, 1)
    set_expiry(service, cid, 30)  # due

    async def work(session, runtime):  # type: ignore[no-untyped-def]
        apps = OAuthAppService(session, runtime.sealer, runtime.catalog)
        app = await apps.configure(
            tenant.organization_id, PROVIDER_KEY, client_id=CLIENT_ID, client_secret=CLIENT_SECRET
        )
        app.key_id = "0" * 16  # sealed under a key no longer configured
        connection = await session.get(Connection, cid)
        connection.oauth_app_id = app.id
        await session.commit()
        refresher = BackgroundRefresher(runtime, organization_id=tenant.organization_id)
        ready = await refresher._claim(10, set())
        await session.rollback()
        after = await session.get(Connection, cid, populate_existing=True)
        return ready, after.refresh_lease_owner, after.status, cid in refresher._resting

    ready, owner, status, resting = service.run_db(work)
    assert ready == [] and owner is None and status == "active" and resting


def test_org_scopes_a_pass_to_one_organization(
    api: httpx.Client, tenant: Tenant, other_tenant: Tenant, service: ServiceProcess
) -> None:
    [mine] = connect_accounts(api, tenant, 1)
    [theirs] = connect_accounts(api, other_tenant, 1)
    set_due(service, [mine, theirs], 120)

    run_refresher_once(service, other_tenant.organization_id)

    got = states(service, [mine, theirs])
    assert (got[mine].version, got[mine].refreshed_events) == (1, 0)
    assert (got[theirs].version, got[theirs].refreshed_events) == (2, 1)


def test_a_revoked_grant_becomes_needs_reauth_with_a_reason(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess, oidc: OidcProvider
) -> None:
    [connection_id] = connect_accounts(api, tenant, 1)
    _, refresh = stored_tokens(service, connection_id)
    revoked = web.post(
        oidc.metadata["revocation_endpoint"],
        auth=(CLIENT_ID, CLIENT_SECRET),
        data={"token": refresh},
    )
    assert revoked.status_code == 200
    set_due(service, [connection_id], 120)

    counts = run_refresher_once(service, tenant.organization_id)

    assert counts["needs_reauth"] == 1
    state = states(service, [connection_id])[connection_id]
    assert state.status == "needs_reauth" and state.lease_owner is None
    assert state.status_reason and state.status_reason.startswith("invalid_grant")
    assert event_types(service, connection_id)[-1] == "connection.refresh_failed"
    response = token(api, tenant, connection_id)
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "REAUTHORIZATION_REQUIRED"
    # A second run leaves it alone: needs_reauth is not due.
    run_refresher_once(service, tenant.organization_id)
    assert event_types(service, connection_id).count("connection.refresh_failed") == 1


def test_two_refreshers_at_once_refresh_every_connection_exactly_once(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess, proxy: FaultProxy
) -> None:
    ids = connect_accounts(api, tenant, 24, connector_type=FAULTY_KEY)
    set_due(service, ids, 200)
    # Each refresh takes a second: one process alone would need six. The second starts once
    # the first is at work, so they claim side by side.
    proxy.set_mode("delay:1")
    before = proxy.count(TOKEN_PATH)
    env = refresher_env(service)
    args = ("--once", "--json", "--concurrency", "4", "--provider-concurrency", "4")
    args += ("--org", tenant.organization_id)
    processes = [
        subprocess.Popen(refresher_command(*args), env=env, stdout=subprocess.PIPE, text=True)
    ]
    wait_for(lambda: proxy.count(TOKEN_PATH) > before, what="the first refresher at work")
    processes.append(
        subprocess.Popen(refresher_command(*args), env=env, stdout=subprocess.PIPE, text=True)
    )
    outputs = [process.communicate(timeout=120)[0] for process in processes]
    for output in outputs:
        RECORD.record("connectors refresher --once", output)
    assert [process.returncode for process in processes] == [0, 0], outputs
    proxy.set_mode("pass")

    counts = [json.loads(output) for output in outputs]
    assert all(count["refreshed"] > 0 for count in counts), counts  # they shared the work
    assert sum(count["refreshed"] for count in counts) == len(ids)
    got = states(service, ids)
    assert {cid: (s.refreshed_events, s.version, s.status) for cid, s in got.items()} == {
        cid: (1, 2, "active") for cid in ids
    }
    # A double refresh would have presented a rotated refresh token: the provider would have
    # revoked that grant. Every grant is alive: a forced refresh through the API works.
    for cid in ids:
        response = token(api, tenant, cid, force_refresh="true")
        assert response.status_code == 200, response.text


def test_sigterm_lets_refreshes_in_flight_finish_and_hands_the_rest_back(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess, proxy: FaultProxy
) -> None:
    ids = connect_accounts(api, tenant, 6, connector_type=FAULTY_KEY)
    set_due(service, ids, 200)
    proxy.set_mode("delay:3")
    before = proxy.count(TOKEN_PATH)
    process = subprocess.Popen(
        # Scoped to this test's organization: rows other tests left due (e.g. a connection
        # whose fault backoff just ran out) would otherwise take a slot and a proxy count.
        refresher_command(
            "--concurrency", "4", "--provider-concurrency", "2", "--org", tenant.organization_id
        ),
        env=refresher_env(
            service,
            CONNECTORS_PROVIDER_TIMEOUT_SECONDS="10",  # the stall is no timeout
            CONNECTORS_REFRESHER_INTERVAL_SECONDS="60",
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # Two refreshes are at the provider; two more claimed connections wait for a slot.
        wait_for(lambda: proxy.count(TOKEN_PATH) - before >= 2, what="refreshes in flight")
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=20)
        RECORD.record("connectors refresher (SIGTERM)", stdout, stderr)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr[-3000:]
    proxy.set_mode("pass")

    got = states(service, ids)
    refreshed = [cid for cid, state in got.items() if state.refreshed_events == 1]
    # The two in flight finished and were stored; nothing else was started after SIGTERM.
    assert len(refreshed) == 2 == proxy.count(TOKEN_PATH) - before, got
    assert all(got[cid].version == 2 for cid in refreshed)
    assert all(
        state.version == 1 and state.refreshed_events == 0
        for cid, state in got.items()
        if cid not in refreshed
    )
    # Nothing is left broken: no lease is held, every connection is active and hands out a
    # token, refreshed (the untouched ones) or as stored (the two just refreshed).
    assert all(state.lease_owner is None and state.status == "active" for state in got.values())
    for cid in ids:
        response = token(api, tenant, cid)
        assert response.status_code == 200, response.text


def test_serve_with_the_refresher_refreshes_without_being_asked(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess, tmp_path: Path
) -> None:
    [connection_id] = connect_accounts(api, tenant, 1)
    access, _ = stored_tokens(service, connection_id)
    server = ServiceProcess(
        free_port(),
        {**service.env, "CONNECTORS_REFRESHER_INTERVAL_SECONDS": "0.2"},
        tmp_path / "embedded.log",
        extra_args=["--refresher"],
    ).start()
    try:
        set_due(service, [connection_id], 450)
        wait_for(
            lambda: states(service, [connection_id])[connection_id].refreshed_events == 1,
            what="the embedded refresher",
        )
    finally:
        server.stop()
    assert stored_tokens(service, connection_id)[0] != access
    assert states(service, [connection_id])[connection_id].lease_owner is None
