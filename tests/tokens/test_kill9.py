"""`kill -9` in the middle of refreshes: nothing is left silently broken, and the dead
holder's work is taken over within a lease's life.

The provider rotates refresh tokens and revokes the whole grant when a used one comes back. A
process killed after the provider answered, before the answer was stored, has lost the only
live refresh token: the next refresh presents the old one and is refused. That connection must
then say so (needs_reauth with ``rotation_lost``: the attempt the dead holder left marked on the
row tells a lost rotation from a revoked grant); every other one must still hand out a working
token. The fault proxy's ``delay-after`` holds the provider's answer so the kill lands exactly
there.
"""

from __future__ import annotations

import contextlib
import subprocess
import threading
from pathlib import Path

import httpx
from sqlalchemy import func, select

from personal_connectors.models import Connection, utcnow
from tests.conftest import FAULTY_KEY, Tenant
from tests.support import web
from tests.support.fault_proxy import FaultProxy
from tests.support.oidc import free_port
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

# The killed process: a short lease (renewed while it lives, expiring soon after the kill), and
# a request lifetime longer than the stall (the process is still waiting when it dies).
LEASE_SECONDS = 3
KILLED_ENV = {
    "CONNECTORS_REFRESH_LEASE_SECONDS": str(LEASE_SECONDS),
    "CONNECTORS_REFRESH_REQUEST_SECONDS": "15",
}
# A dead holder's leases are free again within their life (plus the test's own slowness).
TAKEOVER_SECONDS = LEASE_SECONDS + 5
# The provider answers at once; its answer reaches the service only after this stall.
STALL = "delay-after:6"


def held_leases(service: ServiceProcess, ids: list[str]) -> int:
    """How many of ``ids`` carry an unexpired refresh lease."""

    async def work(session, runtime):  # type: ignore[no-untyped-def]
        statement = select(func.count()).where(
            Connection.id.in_(ids), Connection.refresh_lease_until >= utcnow()
        )
        return (await session.execute(statement)).scalar_one()

    return int(service.run_db(work))


def assert_none_silently_broken(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess, ids: list[str]
) -> dict[str, str]:
    """Each connection hands out a token after a forced refresh (its grant is alive), or says
    it needs re-authorization, with a reason stored. Anything else is silently broken."""
    outcome = {}
    for cid in ids:
        response = token(api, tenant, cid, force_refresh="true")
        if response.status_code == 200:
            outcome[cid] = "works"
            continue
        assert response.status_code == 409, (cid, response.text)
        assert response.json()["error"]["code"] == "REAUTHORIZATION_REQUIRED"
        outcome[cid] = "needs_reauth"
    got = states(service, ids)
    for cid, result in outcome.items():
        assert got[cid].status == ("active" if result == "works" else "needs_reauth"), got[cid]
        if result == "needs_reauth":
            assert (got[cid].status_reason or "").startswith("rotation_lost"), got[cid]
    return outcome


def test_kill_9_of_the_refresher_mid_refresh(
    api: httpx.Client,
    tenant: Tenant,
    service: ServiceProcess,
    proxy: FaultProxy,
    tmp_path: Path,
) -> None:
    ids = connect_accounts(api, tenant, 6, connector_type=FAULTY_KEY)
    set_due(service, ids, 200)
    proxy.set_mode(STALL)
    answered = proxy.forwarded(TOKEN_PATH)
    output = tmp_path / "refresher.log"
    RECORD.watch(output, "killed refresher's output")
    log = output.open("wb")
    refresher = subprocess.Popen(
        refresher_command(
            "--concurrency", "4", "--provider-concurrency", "2", "--org", tenant.organization_id
        ),
        env=refresher_env(service, **KILLED_ENV),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        # Two refreshes answered by the provider (rotated there), two more claimed and waiting.
        wait_for(lambda: proxy.forwarded(TOKEN_PATH) - answered >= 2, what="provider answers")
    finally:
        refresher.kill()  # SIGKILL: no finally, no lease released, no answer stored
        refresher.wait()
        log.close()
    assert held_leases(service, ids) >= 2  # the two in flight, and any claimed after them
    assert all(state.version == 1 for state in states(service, ids).values())
    proxy.set_mode("pass")

    # Restart once the dead process's leases have expired: within a lease's life.
    wait_for(lambda: held_leases(service, ids) == 0, TAKEOVER_SECONDS, what="lease expiry")
    run_refresher_once(service, tenant.organization_id)

    # The restarted refresher already found the two whose rotation was lost, and refreshed
    # the four the dead one never sent.
    got = states(service, ids)
    assert sorted(state.status for state in got.values()) == ["active"] * 4 + ["needs_reauth"] * 2
    assert sorted(state.refreshed_events for state in got.values()) == [0, 0, 1, 1, 1, 1]
    outcome = assert_none_silently_broken(api, tenant, service, ids)
    assert list(outcome.values()).count("needs_reauth") == 2, outcome


def test_kill_9_of_a_server_mid_refresh(
    api: httpx.Client,
    tenant: Tenant,
    service: ServiceProcess,
    proxy: FaultProxy,
    tmp_path: Path,
) -> None:
    ids = connect_accounts(api, tenant, 6, connector_type=FAULTY_KEY)
    in_flight, untouched = ids[:3], ids[3:]
    set_due(service, ids, 100)
    server = ServiceProcess(
        free_port(), {**service.env, **KILLED_ENV}, tmp_path / "killed.log"
    ).start()
    proxy.set_mode(STALL)
    answered = proxy.forwarded(TOKEN_PATH)

    def ask(cid: str) -> None:
        with contextlib.suppress(httpx.HTTPError):  # the server dies under this request
            web.post(
                f"{server.api}/{cid}/token", params=tenant.org, headers=tenant.headers, timeout=30
            )

    callers = [threading.Thread(target=ask, args=(cid,)) for cid in in_flight]
    try:
        for caller in callers:
            caller.start()
        wait_for(lambda: proxy.forwarded(TOKEN_PATH) - answered >= 3, what="provider answers")
    finally:
        assert server.process is not None
        server.process.kill()
        server.process.wait()
        for caller in callers:
            caller.join(timeout=30)
    assert held_leases(service, in_flight) == 3
    proxy.set_mode("pass")

    # Restart the server; callers come back once the leases have expired.
    server.start()
    try:
        wait_for(lambda: held_leases(service, ids) == 0, TAKEOVER_SECONDS, what="lease expiry")
        with web.client(base_url=server.api, timeout=30) as restarted:
            outcome = assert_none_silently_broken(restarted, tenant, service, ids)
    finally:
        server.stop()
    assert outcome == {
        **{cid: "needs_reauth" for cid in in_flight},
        **{cid: "works" for cid in untouched},
    }
