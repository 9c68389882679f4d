"""N instances behind nginx on one PostgreSQL, under mixed load, with faults (SPEC §12,
docs/deploy.md).

Three `connectors serve` processes (each with its embedded refresher and webhook worker) behind
nginx run with the deployment's own config (deploy/nginx/), on a private PostgreSQL cluster, with
the real OpenID provider issuing short-lived access tokens and rotating refresh tokens (a refresh
token presented twice destroys the grant there). For LOAD_SECONDS, clients ask for tokens, run
authorize → consent → callback flows with a complete-oauth long-poll waiting on another instance,
and call the provider's API through the proxy (SPEC §9); meanwhile one instance is killed
with SIGKILL and restarted, and PostgreSQL is restarted. Clients behave as the docs tell them to:
a 5xx in the envelope, or a connection error, is retried after its Retry-After.

Afterwards: every client request ended in success after its retries, every error answer anyone
saw was the §2 envelope (nginx's own included), no connection is lost or needs re-authorization
and each still refreshes and works at the provider, the provider never saw a refresh token twice
and refused none, and every webhook event reached the receiver (by webhook-id, none missing).

The kill lands while the victim's requests to the provider are held before the provider
(tests/support/provider_gate.py): a kill after the provider rotated a refresh token and before
the answer is stored loses the grant whatever a service does, a case tests/tokens/test_kill9.py
covers on its own; here the victim dies with refreshes whose outcome it cannot know, the case it
must survive without loss.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import yaml
from sqlalchemy import select

from personal_connectors.apps.service import OAuthAppService
from personal_connectors.events.types import EventType
from personal_connectors.models import ConnectionEvent, DeliveryStatus, WebhookDelivery
from tests.conftest import CLIENT_ID, CLIENT_SECRET, PROVIDER_KEY, Tenant, make_tenant
from tests.support import web
from tests.support.envelope import is_envelope
from tests.support.nginx import Nginx
from tests.support.oidc import OidcProvider, free_port, login_and_consent
from tests.support.postgres_cluster import PrivateCluster
from tests.support.provider_gate import ProviderGate
from tests.support.service import TEST_ENCRYPTION_KEY, ServiceProcess
from tests.support.webhook_receiver import WebhookReceiver

pytestmark = [pytest.mark.deploy, pytest.mark.postgres]

INSTANCES = 3
LOAD_SECONDS = 60.0
KILL_AT, RESTART_AT, POSTGRES_RESTART_AT = 12.0, 20.0, 36.0  # seconds into the load
ACCESS_TOKEN_TTL = 20  # seconds: refreshed from its half-life on, several times per run
CONNECTIONS = 24  # connected before the load; the flow clients add more
TOKEN_CLIENTS, FLOW_CLIENTS, PROXY_CLIENTS = 4, 2, 2
# How a client retries one request: a 5xx in the envelope or a connection error, after the
# answer's Retry-After (at most this), until it has tried for GIVE_UP_SECONDS.
RETRIED = frozenset({500, 502, 503, 504})
MAX_RETRY_WAIT = 2.0
GIVE_UP_SECONDS = 60.0
FLOW_ATTEMPTS = 4  # a flow broken by a fault is started again, as a person would
# After the victim's requests to the provider stop, answers it already received are stored
# within this (a commit of one row; the background refresher's batch commits at once too).
SETTLE_SECONDS = 1.5
WAIT = 20  # complete-oauth?wait=N of the flow clients' long-poll


@dataclass
class Ledger:
    """What the clients saw, from every thread."""

    answers: Counter[tuple[str, int, str]] = field(default_factory=Counter)
    not_envelope: list[str] = field(default_factory=list)
    transport_errors: Counter[str] = field(default_factory=Counter)
    gave_up: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    flow_restarts: int = 0
    successes_after: Counter[str] = field(default_factory=Counter)  # by phase
    lock: threading.Lock = field(default_factory=threading.Lock)
    phase: str = "before faults"

    def answer(self, kind: str, response: httpx.Response) -> None:
        status = response.status_code
        code = ""
        if status >= 400:
            try:
                body = response.json()
            except ValueError:
                body = None
            if (
                not is_envelope(body, status)
                or response.headers.get("x-request-id") != (body["error"]["trace_id"])
            ):
                with self.lock:
                    self.not_envelope.append(f"{kind} {status}: {response.text[:300]!r}")
            else:
                code = str(body["error"]["code"])
        with self.lock:
            self.answers[(kind, status, code)] += 1
            if status < 400:
                self.successes_after[self.phase] += 1

    def note(self, bucket: list[str], text: str) -> None:
        with self.lock:
            bucket.append(text)


def call(
    client: httpx.Client, ledger: Ledger, kind: str, method: str, url: str, **kwargs: Any
) -> httpx.Response | None:
    """One request as a well-behaved client makes it: retried on a 5xx in the envelope or a
    broken connection, after Retry-After; None once it gave up (a test failure)."""
    deadline = time.monotonic() + GIVE_UP_SECONDS
    while True:
        wait = 0.5
        try:
            response = client.request(method, url, **kwargs)
        except httpx.TransportError as exc:
            with ledger.lock:
                ledger.transport_errors[f"{kind}: {type(exc).__name__}"] += 1
        else:
            ledger.answer(kind, response)
            if response.status_code not in RETRIED:
                return response
            wait = min(float(response.headers.get("retry-after") or 0.5), MAX_RETRY_WAIT)
        if time.monotonic() + wait > deadline:
            ledger.note(ledger.gave_up, f"{kind} {method} {url}")
            return None
        time.sleep(wait)


class Pool:
    """The connections the clients use; flow clients add theirs."""

    def __init__(self, ids: list[str]) -> None:
        self._ids = list(ids)
        self._lock = threading.Lock()

    def add(self, cid: str) -> None:
        with self._lock:
            self._ids.append(cid)

    def ids(self) -> list[str]:
        with self._lock:
            return list(self._ids)

    def pick(self) -> str:
        with self._lock:
            return random.choice(self._ids)


@dataclass
class Deployment:
    cluster: PrivateCluster
    oidc: OidcProvider
    gates: list[ProviderGate]
    instances: list[ServiceProcess]
    nginx: Nginx
    receiver: WebhookReceiver
    tenant: Tenant

    @property
    def api(self) -> str:
        return f"{self.nginx.base_url}/v1/personal-connectors"


def provider_entry(oidc: OidcProvider, gate: ProviderGate) -> dict[str, object]:
    """The local provider as one instance reaches it: the browser goes to the provider itself,
    the instance's own calls (code exchange, refresh, identity, revocation, API) through its
    gate."""
    metadata = oidc.metadata
    through_gate = {
        name: gate.url + metadata[name].removeprefix(oidc.issuer)
        for name in ("token_endpoint", "userinfo_endpoint", "revocation_endpoint")
    }
    return {
        "display_name": "Local OIDC",
        "issuer": oidc.issuer,
        "authorization_url": metadata["authorization_endpoint"],
        "token_url": through_gate["token_endpoint"],
        "revocation_url": through_gate["revocation_endpoint"],
        "userinfo": {"url": through_gate["userinfo_endpoint"]},
        "api_base_url": gate.url,
        "default_scopes": ["openid", "email", "profile", "offline_access"],
        "authorization_params": {"prompt": "consent"},
    }


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    workdir = tmp_path_factory.mktemp("deploy")
    cluster = PrivateCluster().start()
    stack: list[Any] = [cluster.remove]
    try:
        database_url = cluster.create_database("connectors")
        nginx_port = free_port()
        public = f"http://127.0.0.1:{nginx_port}"
        oidc = OidcProvider.start(
            [
                {
                    "client_id": CLIENT_ID,
                    "client_secret": CLIENT_SECRET,
                    "redirect_uris": [f"{public}/v1/personal-connectors/callback"],
                    "token_endpoint_auth_method": "client_secret_basic",
                }
            ],
            access_token_ttl=ACCESS_TOKEN_TTL,
            workdir=workdir / "oidc",
        )
        stack.append(oidc.stop)
        receiver = WebhookReceiver()
        stack.append(receiver.close)
        common = {
            "CONNECTORS_DATABASE_URL": database_url,
            "CONNECTORS_BASE_URL": public,
            "CONNECTORS_ENCRYPTION_KEYS": TEST_ENCRYPTION_KEY,
            "CONNECTORS_REFRESHER_EMBEDDED": "true",
            "CONNECTORS_REFRESHER_INTERVAL_SECONDS": "1",
            "CONNECTORS_WEBHOOK_WORKER": "true",
            "CONNECTORS_WEBHOOK_POLL_SECONDS": "0.2",
            "CONNECTORS_WEBHOOK_TIMEOUT_SECONDS": "3",
            # Enough attempts to outlast each fault; a delivery claimed by the killed
            # instance is taken again after its claim (timeout + 30 s) has run out.
            "CONNECTORS_WEBHOOK_RETRY_SCHEDULE": "0.5,1,1,2,2,3,5,5,10,10,10",
            # A dead holder's refresh leases are taken over within seconds.
            "CONNECTORS_REFRESH_LEASE_SECONDS": "3",
            "CONNECTORS_PROVIDER_TIMEOUT_SECONDS": "5",
            "CONNECTORS_HOT_READ_POOL_SIZE": "8",
            "CONNECTORS_COMPLETE_WAIT_POLL_SECONDS": "0.5",
            "CONNECTORS_LOG_LEVEL": "INFO",
        }
        gates, instances = [], []
        for index in range(INSTANCES):
            gate = ProviderGate(oidc.issuer)
            stack.append(gate.close)
            gates.append(gate)
            providers = workdir / f"providers-{index}.yaml"
            providers.write_text(yaml.safe_dump({PROVIDER_KEY: provider_entry(oidc, gate)}))
            env = {
                **common,
                "CONNECTORS_DATA_DIR": str(workdir / f"data-{index}"),
                "CONNECTORS_PROVIDERS_FILE": str(providers),
            }
            instances.append(ServiceProcess(free_port(), env, workdir / f"instance-{index}.log"))
        # Upgrades and first installs alike: the schema first, then the instances (deploy.md).
        instances[0].cli("migrate")
        with ThreadPoolExecutor(INSTANCES) as starting:
            list(starting.map(lambda instance: instance.start(), instances))
        stack.extend(instance.stop for instance in instances)
        nginx = Nginx(workdir / "nginx", [i.port for i in instances], nginx_port).start()
        stack.append(nginx.stop)

        async def configure_app(session, runtime):  # type: ignore[no-untyped-def]
            apps = OAuthAppService(session, runtime.sealer, runtime.catalog)
            await apps.configure(
                None, PROVIDER_KEY, client_id=CLIENT_ID, client_secret=CLIENT_SECRET
            )

        instances[0].run_db(configure_app)
        tenant = make_tenant(instances[0])
        yield Deployment(cluster, oidc, gates, instances, nginx, receiver, tenant)
    finally:
        for stop in reversed(stack):
            stop()


def connect_one(client: httpx.Client, deployment: Deployment, ledger: Ledger) -> str | None:
    """One person connecting an account: authorize, a complete-oauth long-poll (on whichever
    instance nginx picks) waiting while the person consents at the provider and the browser
    comes back to the callback (likely another instance). A flow a fault broke is started
    again; None after FLOW_ATTEMPTS."""
    tenant = deployment.tenant
    api = deployment.api
    login = f"person-{uuid.uuid4().hex[:10]}"
    for _ in range(FLOW_ATTEMPTS):
        started = call(
            client,
            ledger,
            "authorize",
            "POST",
            f"{api}/authorize",
            params=tenant.org,
            headers=tenant.headers,
            json={"connector_type": PROVIDER_KEY},
        )
        if started is None or started.status_code != 200:
            ledger.note(ledger.unexpected, f"authorize: {started and started.text[:300]}")
            return None
        state = started.json()["state_token"]
        waited: dict[str, httpx.Response | None] = {}

        def long_poll(state: str = state, waited: dict[str, Any] = waited) -> None:
            waited["answer"] = call(
                client,
                ledger,
                "complete-oauth",
                "POST",
                f"{api}/complete-oauth",
                params={**tenant.org, "wait": WAIT},
                headers=tenant.headers,
                json={"state_token": state},
            )

        poller = threading.Thread(target=long_poll)
        poller.start()
        callback_url = login_and_consent(started.json()["authorization_url"], login=login)
        call(
            client, ledger, "callback", "GET", callback_url, headers={"Accept": "application/json"}
        )
        poller.join()
        answer = waited.get("answer")
        if answer is not None and answer.status_code == 200 and answer.json()["connected"]:
            return str(answer.json()["connection"]["id"])
        # Not connected yet (a long-poll that ended before the callback, or a callback that
        # died with an instance): ask once more without waiting, then start over.
        again = call(
            client,
            ledger,
            "complete-oauth",
            "POST",
            f"{api}/complete-oauth",
            params=tenant.org,
            headers=tenant.headers,
            json={"state_token": state},
        )
        if again is not None and again.status_code == 200 and again.json()["connected"]:
            return str(again.json()["connection"]["id"])
        with ledger.lock:
            ledger.flow_restarts += 1
    return None


def works_at_provider(oidc: OidcProvider, access_token: str) -> bool:
    response = web.get(
        oidc.metadata["userinfo_endpoint"],
        headers={"Authorization": f"Bearer {access_token}"},
        timeout=10,
    )
    return response.status_code == 200


def token_client(deployment: Deployment, pool: Pool, ledger: Ledger, stop: threading.Event) -> None:
    tenant = deployment.tenant
    with web.client(timeout=90) as client:
        asked = 0
        while not stop.is_set():
            cid = pool.pick()
            response = call(
                client,
                ledger,
                "token",
                "POST",
                f"{deployment.api}/{cid}/token",
                params=tenant.org,
                headers=tenant.headers,
            )
            if response is None:
                continue
            if response.status_code != 200:
                ledger.note(ledger.unexpected, f"token {cid}: {response.text[:300]}")
                continue
            asked += 1
            if asked % 10 == 0 and not works_at_provider(
                deployment.oidc, response.json()["access_token"]
            ):
                ledger.note(ledger.unexpected, f"token {cid}: refused by the provider")


def flow_client(deployment: Deployment, pool: Pool, ledger: Ledger, stop: threading.Event) -> None:
    with web.client(timeout=90) as client:
        while not stop.is_set():
            cid = connect_one(client, deployment, ledger)
            if cid is None:
                ledger.note(ledger.gave_up, "a person could not connect an account")
            else:
                pool.add(cid)


def proxy_client(deployment: Deployment, pool: Pool, ledger: Ledger, stop: threading.Event) -> None:
    """Proxied calls: the provider's userinfo (`/me`) through SPEC §9's proxy, streamed by
    nginx's proxy location; the provider's own answer comes back (X-Connectors-Proxy)."""
    tenant = deployment.tenant
    with web.client(timeout=90) as client:
        while not stop.is_set():
            cid = pool.pick()
            response = call(
                client,
                ledger,
                "proxy",
                "GET",
                f"{deployment.api}/{cid}/proxy/me",
                params=tenant.org,
                headers=tenant.headers,
            )
            if response is not None and (
                response.status_code != 200
                or response.headers.get("x-connectors-proxy") != "upstream"
            ):
                ledger.note(ledger.unexpected, f"proxy {cid}: {response.status_code}")


def faults(deployment: Deployment, ledger: Ledger, started: float, log: list[str]) -> None:
    """Kill -9 one instance (its provider traffic held, see the module's docstring), restart
    it, then restart PostgreSQL."""

    def at(second: float) -> None:
        time.sleep(max(0.0, started + second - time.monotonic()))

    victim, gate = deployment.instances[1], deployment.gates[1]
    at(KILL_AT)
    gate.hold()
    gate.wait_idle()
    time.sleep(SETTLE_SECONDS)
    assert victim.process is not None
    victim.process.kill()
    victim.process.wait()
    gate.release(drop=True)
    ledger.phase = "after the kill"
    log.append(f"{time.monotonic() - started:.1f}s: instance 2 killed (-9)")
    at(RESTART_AT)
    victim.start()
    ledger.phase = "after the restart"
    log.append(f"{time.monotonic() - started:.1f}s: instance 2 ready again")
    at(POSTGRES_RESTART_AT)
    deployment.cluster.restart()
    ledger.phase = "after PostgreSQL's restart"
    log.append(f"{time.monotonic() - started:.1f}s: PostgreSQL restarted")


def wait_for_deliveries(
    deployment: Deployment, event_ids: set[str], timeout: float = 120.0
) -> list[WebhookDelivery]:
    """The deliveries of ``event_ids``, once none of them is pending any more."""

    async def work(session, runtime):  # type: ignore[no-untyped-def]
        rows = await session.execute(
            select(WebhookDelivery).where(
                WebhookDelivery.organization_id == deployment.tenant.organization_id
            )
        )
        return [row for row in rows.scalars() if row.event_id in event_ids]

    deadline = time.monotonic() + timeout
    while True:
        rows = deployment.instances[0].run_db(work)
        if all(row.status != DeliveryStatus.PENDING for row in rows):
            return rows
        assert time.monotonic() < deadline, "webhook deliveries still pending"
        time.sleep(1)


def subscribed_events(deployment: Deployment) -> dict[str, str]:
    """The test organization's events the endpoint subscribed to (every type but
    token_issued): id -> type."""

    async def work(session, runtime):  # type: ignore[no-untyped-def]
        statement = select(ConnectionEvent.id, ConnectionEvent.type).where(
            ConnectionEvent.organization_id == deployment.tenant.organization_id,
            ConnectionEvent.type != EventType.TOKEN_ISSUED,
        )
        return {row[0]: row[1] for row in (await session.execute(statement)).all()}

    return dict(deployment.instances[0].run_db(work))


def test_three_instances_behind_nginx_survive_a_kill_and_a_database_restart(
    deployment: Deployment,
) -> None:
    began = time.monotonic()
    tenant = deployment.tenant
    api = deployment.api
    with web.client(timeout=90) as client:
        hooks = client.post(
            f"{api}/webhooks",
            params=tenant.org,
            headers=tenant.headers,
            json={"url": deployment.receiver.url("/hook")},
        )
        assert hooks.status_code == 201, hooks.text
        setup = Ledger()
        ids = [connect_one(client, deployment, setup) for _ in range(CONNECTIONS)]
    assert None not in ids and not setup.not_envelope, setup
    pool = Pool([str(cid) for cid in ids])

    ledger = Ledger()
    stop = threading.Event()
    clients = (
        [token_client] * TOKEN_CLIENTS
        + [flow_client] * FLOW_CLIENTS
        + [proxy_client] * PROXY_CLIENTS
    )
    threads = [
        threading.Thread(target=work, args=(deployment, pool, ledger, stop)) for work in clients
    ]
    fault_log: list[str] = []
    load_started = time.monotonic()
    chaos = threading.Thread(target=faults, args=(deployment, ledger, load_started, fault_log))
    for thread in [*threads, chaos]:
        thread.start()
    chaos.join(timeout=LOAD_SECONDS + 120)  # the faults run within the load, however slow
    time.sleep(max(0.0, load_started + LOAD_SECONDS - time.monotonic()))
    stop.set()
    for thread in threads:
        thread.join(timeout=GIVE_UP_SECONDS * FLOW_ATTEMPTS)
    load_seconds = time.monotonic() - load_started
    assert not chaos.is_alive() and len(fault_log) == 3, fault_log

    # What the clients saw: only envelopes, never a broken connection, every request through.
    summary = (
        f"load {load_seconds:.0f}s, faults {fault_log}, answers {dict(ledger.answers)}, "
        f"successes by phase {dict(ledger.successes_after)}, flow restarts "
        f"{ledger.flow_restarts}"
    )
    print(summary)
    assert not ledger.gave_up, (ledger.gave_up, summary)
    assert not ledger.not_envelope, ledger.not_envelope
    # A fault is a 503 with Retry-After (nginx's when no instance answers, the service's while
    # the database is away), never a 500.
    assert not [key for key in ledger.answers if key[1] == 500], summary
    assert not ledger.transport_errors, ledger.transport_errors
    assert not ledger.unexpected, ledger.unexpected
    # The load ran through every phase, and the restarted instance serves again.
    for phase in (
        "before faults",
        "after the kill",
        "after the restart",
        "after PostgreSQL's restart",
    ):
        assert ledger.successes_after[phase] > 0, (phase, summary)
    for instance in deployment.instances:
        assert web.get(f"{instance.base_url}/readyz", timeout=10).status_code == 200

    # No connection lost or broken: every one is listed active, refreshes on demand, and its
    # token works at the provider.
    with web.client(timeout=90) as client:
        # One page holds them all (the list's largest page; a quick run makes more than 200).
        listed = client.get(api, params={**tenant.org, "limit": 1000}, headers=tenant.headers)
        assert listed.status_code == 200, listed.text
        assert "link" not in listed.headers, "more connections than one page: page through them"
        statuses = {row["id"]: row["status"] for row in listed.json()}
        known = pool.ids()
        assert {cid: statuses.get(cid) for cid in known} == dict.fromkeys(known, "active")
        for cid in known:
            fresh = client.post(
                f"{api}/{cid}/token",
                params={**tenant.org, "force_refresh": "true"},
                headers=tenant.headers,
            )
            assert fresh.status_code == 200, (cid, fresh.text)
            assert works_at_provider(deployment.oidc, fresh.json()["access_token"]), cid

    # No refresh token presented twice at the provider, and none refused (a reuse would have
    # destroyed the grant there); and refreshing did happen, a lot.
    grants = deployment.oidc.refresh_grants()
    presented = Counter(grant["presented_sha256"] for grant in grants)
    assert [h for h, n in presented.items() if n > 1] == []
    assert [g for g in grants if g["status"] != 200] == []
    assert "grant.error" not in deployment.oidc.stderr, deployment.oidc.stderr
    assert len(grants) >= 2 * len(known), len(grants)

    # Every webhook event delivered: one delivery per event, each received (by webhook-id).
    # (The refreshers keep working meanwhile: the events up to now, and their deliveries.)
    events = subscribed_events(deployment)
    deliveries = wait_for_deliveries(deployment, set(events))
    owed = Counter(row.event_id for row in deliveries)
    unowed = {
        event_id: (kind, owed[event_id]) for event_id, kind in events.items() if owed[event_id] != 1
    }
    assert not unowed, f"events without exactly one delivery (type, deliveries): {unowed}"
    assert len(deliveries) == len(events)
    assert Counter(row.status for row in deliveries) == {DeliveryStatus.SUCCEEDED: len(events)}
    received = {item.webhook_id for item in deployment.receiver.delivered("/hook")}
    missing = [row.id for row in deliveries if row.id not in received]
    assert missing == [], f"{len(missing)} of {len(deliveries)} deliveries never received"
    duplicates = len(deployment.receiver.delivered("/hook")) - len(received)
    print(
        f"{len(known)} connections, {len(grants)} refreshes at the provider, "
        f"{len(deliveries)} webhook deliveries ({duplicates} sent again), "
        f"test {time.monotonic() - began:.0f}s"
    )
