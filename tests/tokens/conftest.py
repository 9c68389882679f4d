"""What the token tests share: the fault proxy reset around each test, connecting many accounts,
running the background refresher as the real ``connectors refresher`` process, and reading the
state of many connections in one go."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import func, select, update

from personal_connectors.events.types import EventType
from personal_connectors.models import Connection, ConnectionEvent, utcnow
from tests.conftest import PROVIDER_KEY, Tenant
from tests.flows.conftest import authorize_and_consent, follow_callback
from tests.support import outputs, web
from tests.support.fault_proxy import FaultProxy
from tests.support.oidc import OidcProvider
from tests.support.service import ServiceProcess

TOKEN_PATH = "/token"


@pytest.fixture
def proxy(fault_proxy: FaultProxy) -> Iterator[FaultProxy]:
    fault_proxy.set_mode("pass")
    yield fault_proxy
    fault_proxy.set_mode("pass")


def connect_accounts(
    api: httpx.Client, tenant: Tenant, count: int, connector_type: str = PROVIDER_KEY
) -> list[str]:
    """``count`` connections of distinct accounts through the whole flow (real grants)."""
    ids = []
    for _ in range(count):
        flow = authorize_and_consent(
            api, tenant, login=f"user-{os.urandom(4).hex()}", connector_type=connector_type
        )
        response = follow_callback(flow.callback_url)
        assert response.status_code == 200, response.text
        ids.append(str(response.json()["data"]["connection_id"]))
    return ids


def wait_for(condition: Callable[[], bool], timeout: float = 30.0, what: str = "") -> None:
    """Poll ``condition`` until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def connect_fake(api: httpx.Client, tenant: Tenant, connector_type: str) -> str:
    """A connection at one of the fake provider's profiles (its authorize redirects at once)."""
    started = api.post(
        "/authorize",
        params=tenant.org,
        headers=tenant.headers,
        json={"connector_type": connector_type},
    )
    assert started.status_code == 200, started.text
    consent = web.get(started.json()["authorization_url"], follow_redirects=False, timeout=10)
    assert consent.status_code == 302, consent.text
    response = follow_callback(consent.headers["location"])
    assert response.status_code == 200, response.text
    return str(response.json()["data"]["connection_id"])


def works_at_oidc(oidc: OidcProvider, access_token: str) -> bool:
    """Whether the local OpenID provider accepts ``access_token`` (its userinfo answers)."""
    response = web.get(
        oidc.metadata["userinfo_endpoint"],
        headers={"Authorization": f"Bearer {access_token}"},
        timeout=10,
    )
    return response.status_code == 200


def token(api: httpx.Client, tenant: Tenant, connection_id: str, **params: str) -> httpx.Response:
    return api.post(
        f"/{connection_id}/token", params={**tenant.org, **params}, headers=tenant.headers
    )


def refresher_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "personal_connectors", "refresher", *args]


def refresher_env(service: ServiceProcess, **overrides: str) -> dict[str, str]:
    return {**os.environ, **service.env, **overrides}


def run_refresher_once(
    service: ServiceProcess, org: str, *args: str, env: dict[str, str] | None = None
) -> dict[str, int]:
    """``connectors refresher --once --json --org ORG`` as an operator (or cron) runs it; its
    counts. Always scoped to the test's organization: the database is shared by the worker's
    tests, and rows another test left due would change the counts."""
    result = outputs.run(
        refresher_command("--once", "--json", "--org", org, *args),
        "connectors refresher --once",
        env=env or refresher_env(service),
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    counts: dict[str, int] = json.loads(result.stdout)
    return counts


@dataclass(frozen=True)
class State:
    status: str
    status_reason: str | None
    version: int
    lease_owner: str | None
    refreshed_events: int


def states(service: ServiceProcess, ids: list[str]) -> dict[str, State]:
    """Each connection's status, version, lease and number of ``connection.refreshed`` events."""

    async def work(session, runtime):  # type: ignore[no-untyped-def]
        refreshed = dict(
            (
                await session.execute(
                    select(ConnectionEvent.connection_id, func.count())
                    .where(
                        ConnectionEvent.connection_id.in_(ids),
                        ConnectionEvent.type == EventType.REFRESHED,
                    )
                    .group_by(ConnectionEvent.connection_id)
                )
            ).all()
        )
        rows = (await session.execute(select(Connection).where(Connection.id.in_(ids)))).scalars()
        return {
            row.id: State(
                row.status,
                row.status_reason,
                row.version,
                row.refresh_lease_owner,
                refreshed.get(row.id, 0),
            )
            for row in rows
        }

    return service.run_db(work)


def set_due(service: ServiceProcess, ids: list[str], seconds_from_now: float) -> None:
    """Make connections expire soon (inside the refresher's window) in one write."""

    async def work(session, runtime):  # type: ignore[no-untyped-def]
        await session.execute(
            update(Connection)
            .where(Connection.id.in_(ids))
            .values(expires_at=utcnow() + timedelta(seconds=seconds_from_now))
        )
        await session.commit()

    service.run_db(work)
