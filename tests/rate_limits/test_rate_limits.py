"""Rate limits (SPEC §12): `CONNECTORS_RATE_LIMIT` per user key and per (service key, end user),
`CONNECTORS_RATE_LIMIT_SERVICE` on a service key's total; 429 `RATE_LIMIT_EXCEEDED` in the
envelope with `Retry-After`; the `x-ratelimit-*` headers on every answer of a limited route.

A second `connectors serve` with the limits on shares the session's database (and its tenants)
with the session's service, which has them off."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from joserfc.jwk import RSAKey
from sqlalchemy import select

from personal_connectors.models import Connection, KeyKind
from personal_connectors.oauth.rfc8693 import GRANT_TYPE, JWT_TOKEN_TYPE
from personal_connectors.portability.importer import ConnectionImporter
from tests.conftest import PROVIDER_KEY, Tenant, make_tenant
from tests.support import web
from tests.support.envelope import is_envelope
from tests.support.issuer import TestIssuer
from tests.support.oidc import free_port
from tests.support.platform import make_organization_key
from tests.support.service import ServiceProcess

PER_CALLER = 4
SERVICE_TOTAL = 6
HOUR = 3600
HEADERS = (
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
)


@pytest.fixture(scope="module")
def limited(
    service: ServiceProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    env = {
        **service.env,
        "CONNECTORS_RATE_LIMIT": f"{PER_CALLER}/hour",
        "CONNECTORS_RATE_LIMIT_SERVICE": f"{SERVICE_TOTAL} per hour",
    }
    log = tmp_path_factory.mktemp("limited") / "service.log"
    process = ServiceProcess(free_port(), env, log).start()
    yield process
    process.stop()


def import_connection(service: ServiceProcess, tenant: Tenant) -> str:
    """A connection of the tenant's user with a token valid for a day (no refresh needed)."""
    line = {
        "user_id": tenant.user_id,
        "app_key": PROVIDER_KEY,
        "account_id": f"acct-{tenant.user_id}",
        "access_token": f"at-{tenant.user_id}",
        "expires_at": "2099-01-01T00:00:00Z",
    }

    async def work(session, runtime):  # type: ignore[no-untyped-def]
        importer = ConnectionImporter(session, runtime, tenant.organization_id)
        assert (await importer.run([json.dumps(line).encode()])).imported == 1
        found = await session.execute(
            select(Connection.id).where(Connection.user_id == tenant.user_id)
        )
        return found.scalar_one()

    return service.run_db(work)


def limit_headers(response: httpx.Response) -> tuple[int, int, int]:
    limit, remaining, reset = (int(response.headers[name]) for name in HEADERS)
    return limit, remaining, reset


def assert_refused(response: httpx.Response, limit: int) -> None:
    """A 429 in the envelope whose Retry-After is the whole seconds until the window frees a
    request, as its reset header says."""
    assert response.status_code == 429, response.text
    body = response.json()
    assert is_envelope(body, 429), body
    assert body["error"]["code"] == "RATE_LIMIT_EXCEEDED"
    assert body["error"]["type"] == "rate_limit_error"
    assert "Retry-After" in body["error"]["system_message"]
    assert body["error"]["details"]["limit"] == limit
    seen_limit, remaining, reset = limit_headers(response)
    assert (seen_limit, remaining) == (limit, 0)
    retry_after = int(response.headers["retry-after"])
    assert 1 <= retry_after <= HOUR
    assert abs(retry_after - reset) <= 1


def test_each_user_key_has_its_own_limit_on_every_route(
    service: ServiceProcess, limited: ServiceProcess
) -> None:
    first, second = make_tenant(service), make_tenant(service)
    connection = import_connection(service, first)
    with web.client(base_url=limited.api, timeout=30) as api:
        answers = [
            api.post(f"/{connection}/token", params=first.org, headers=first.headers)
            for _ in range(PER_CALLER)
        ]
        for n, answer in enumerate(answers, start=1):
            assert answer.status_code == 200, answer.text
            limit, remaining, reset = limit_headers(answer)
            assert (limit, remaining) == (PER_CALLER, PER_CALLER - n)
            assert 0 < reset <= HOUR
        # Over the limit: the token route, and any other route of the same key.
        assert_refused(
            api.post(f"/{connection}/token", params=first.org, headers=first.headers), PER_CALLER
        )
        assert_refused(api.get("/", params=first.org, headers=first.headers), PER_CALLER)
        # The other key is counted on its own.
        other = api.get("/", params=second.org, headers=second.headers)
        assert other.status_code == 200, other.text
        assert limit_headers(other)[:2] == (PER_CALLER, PER_CALLER - 1)


def test_answers_other_than_200_are_counted_and_carry_the_headers(
    service: ServiceProcess, limited: ServiceProcess
) -> None:
    tenant = make_tenant(service)
    with web.client(base_url=limited.api, timeout=30) as api:
        missing = api.post(
            "/conn_" + "0" * 32 + "/token", params=tenant.org, headers=tenant.headers
        )
        assert missing.status_code == 404
        assert limit_headers(missing)[:2] == (PER_CALLER, PER_CALLER - 1)
        invalid = api.get("/", params={**tenant.org, "status": "nonsense"}, headers=tenant.headers)
        assert invalid.status_code == 400
        assert limit_headers(invalid)[:2] == (PER_CALLER, PER_CALLER - 2)


def test_unauthenticated_requests_are_not_limited_by_key(limited: ServiceProcess) -> None:
    """No key, or a wrong one: 401 as always, and no bucket (the key is not known)."""
    with web.client(base_url=limited.api, timeout=30) as api:
        for _ in range(PER_CALLER + 2):
            anonymous = api.get("/", params={"organization_id": "org_x"})
            assert anonymous.status_code == 401
            assert not any(name in anonymous.headers for name in HEADERS)
        assert "x-ratelimit-limit-requests" not in web.get(f"{limited.base_url}/livez").headers


def test_a_service_key_is_limited_per_end_user_and_in_total(
    service: ServiceProcess, limited: ServiceProcess
) -> None:
    tenant = make_tenant(service)
    key = make_organization_key(service, tenant.organization_id)
    with web.client(base_url=limited.api, timeout=30) as api:

        def listing(end_user: str) -> httpx.Response:
            return api.get("/", params={"end_user_id": end_user}, headers=key.headers)

        for n in range(1, PER_CALLER + 1):
            answer = listing("alice")
            assert answer.status_code == 200, answer.text
            # The end user's bucket is the tighter one: SERVICE_TOTAL - n > PER_CALLER - n.
            assert limit_headers(answer)[:2] == (PER_CALLER, PER_CALLER - n)
        assert_refused(listing("alice"), PER_CALLER)
        # The same end user named by the path counts in the same bucket.
        assert_refused(api.get("/end-users/alice", headers=key.headers), PER_CALLER)
        # Another end user has its own bucket; alice's refused request used none of the total.
        for n in range(1, SERVICE_TOTAL - PER_CALLER + 1):
            answer = listing("bob")
            assert answer.status_code == 200, answer.text
            remaining_total = SERVICE_TOTAL - PER_CALLER - n
            assert limit_headers(answer)[:2] == (SERVICE_TOTAL, remaining_total)
        # The service key's total is spent: every end user is refused, by the total.
        for end_user in ("bob", "carol"):
            refused = listing(end_user)
            assert_refused(refused, SERVICE_TOTAL)
            assert "all its end users together" in refused.json()["error"]["system_message"]
        # The token route counts in the same buckets.
        assert_refused(
            api.post(
                "/conn_" + "0" * 32 + "/token", params={"end_user_id": "dave"}, headers=key.headers
            ),
            SERVICE_TOTAL,
        )


def test_no_limit_configured_means_no_headers_and_no_refusal(service: ServiceProcess) -> None:
    tenant = make_tenant(service)
    connection = import_connection(service, tenant)
    with web.client(base_url=service.api, timeout=30) as api:
        for _ in range(3 * PER_CALLER):
            answer = api.post(f"/{connection}/token", params=tenant.org, headers=tenant.headers)
            assert answer.status_code == 200, answer.text
            assert not any(name in answer.headers for name in HEADERS)
        listing = api.get("/", params=tenant.org, headers=tenant.headers)
        assert listing.status_code == 200
        assert not any(name in listing.headers for name in HEADERS)


def test_a_bad_limit_stops_the_service_naming_the_variable(
    service: ServiceProcess, tmp_path: Path
) -> None:
    for variable, value in (
        ("CONNECTORS_RATE_LIMIT", "lots"),
        ("CONNECTORS_RATE_LIMIT_SERVICE", "0 per minute"),
        ("CONNECTORS_RATE_LIMIT_STORAGE", "memcached://127.0.0.1:11211"),
    ):
        env = {**service.env, "CONNECTORS_RATE_LIMIT": "10/minute", variable: value}
        result = ServiceProcess(free_port(), env, tmp_path / "x.log").cli("migrate", check=False)
        assert result.returncode != 0
        assert variable in result.stderr, result.stderr
        assert value not in result.stderr  # values are never repeated: one may be a secret


def trust(api: httpx.Client, tenant: Tenant, issuer: TestIssuer) -> None:
    trusted = api.post(
        "/trusted-issuers",
        params=tenant.org,
        headers=tenant.headers,
        json={"issuer": issuer.issuer, "audience": "platform", "jwks_uri": issuer.jwks_uri},
    )
    assert trusted.status_code == 201, trusted.text


def exchange_for_pct(
    api: httpx.Client, headers: dict[str, str], subject_token: str
) -> httpx.Response:
    form = {
        "grant_type": GRANT_TYPE,
        "subject_token": subject_token,
        "subject_token_type": JWT_TOKEN_TYPE,
        "audience": "personal-connectors",
    }
    return api.post("/oauth/token", data=form, headers=headers)


def test_the_token_exchange_counts_per_end_user_and_answers_slow_down(
    service: ServiceProcess, limited: ServiceProcess
) -> None:
    """`/oauth/token` keeps its RFC 6749 errors: over the limit it is 429 `slow_down` (the token
    endpoint's error for a client asking too often) with `Retry-After`, counted like a service
    key's requests, per end user the JWT names."""
    tenant = make_tenant(service)
    exchanger = make_organization_key(service, tenant.organization_id, KeyKind.EXCHANGE)
    issuer = TestIssuer()
    try:
        with web.client(base_url=limited.api, timeout=30) as api:
            trust(api, tenant, issuer)

            def exchange(subject: str) -> httpx.Response:
                return exchange_for_pct(api, exchanger.headers, issuer.sign(subject))

            for n in range(1, PER_CALLER + 1):
                answer = exchange("alice")
                assert answer.status_code == 200, answer.text
                assert limit_headers(answer)[:2] == (PER_CALLER, PER_CALLER - n)
            over = exchange("alice")
            assert over.status_code == 429, over.text
            assert over.json()["error"] == "slow_down"
            assert "Retry-After" in over.json()["error_description"]
            assert 1 <= int(over.headers["retry-after"]) <= HOUR
            assert limit_headers(over)[:2] == (PER_CALLER, 0)
            assert exchange("bob").status_code == 200  # another end user: its own bucket
    finally:
        issuer.close()


def test_failed_token_exchanges_are_refused_before_verification_once_over_the_limit(
    service: ServiceProcess, limited: ServiceProcess
) -> None:
    """Subject tokens that fail verification count against the key (one bucket for all its
    failures, whatever end user they claim); once it is full, `slow_down` comes before any
    verification, so a flood of bad tokens costs no signature check nor key set fetch."""
    tenant = make_tenant(service)
    exchanger = make_organization_key(service, tenant.organization_id, KeyKind.EXCHANGE)
    issuer = TestIssuer()
    stranger = RSAKey.generate_key(2048, parameters={"kid": "not-the-issuers"})
    try:
        with web.client(base_url=limited.api, timeout=30) as api:
            trust(api, tenant, issuer)

            def exchange(subject_token: str) -> httpx.Response:
                return exchange_for_pct(api, exchanger.headers, subject_token)

            # Each bad token names another end user: failures share the key's one bucket.
            for n in range(1, PER_CALLER + 1):
                bad = exchange(issuer.sign(f"mallory-{n}", key=stranger))
                assert bad.status_code == 400 and bad.json()["error"] == "invalid_grant", bad.text
                assert limit_headers(bad)[:2] == (PER_CALLER, PER_CALLER - n)
            # An unknown kid made the service fetch the issuer's keys again each time (the
            # service's key sets are refetched at once: CONNECTORS_JWKS_REFETCH_SECONDS=0).
            fetched = issuer.jwks_fetches
            assert fetched >= PER_CALLER
            for n in range(3):
                over = exchange(issuer.sign(f"mallory-x{n}", key=stranger))
                assert over.status_code == 429, over.text
                assert over.json()["error"] == "slow_down"
                assert 1 <= int(over.headers["retry-after"]) <= HOUR
                assert limit_headers(over)[:2] == (PER_CALLER, 0)
            assert issuer.jwks_fetches == fetched  # refused before the keys were looked at
            # Until the window frees it, the key's exchanges are refused before verification.
            assert exchange(issuer.sign("alice")).status_code == 429
            assert issuer.jwks_fetches == fetched
    finally:
        issuer.close()
