"""``/livez`` and ``/readyz`` (SPEC §3.4) and the 500 answer (SPEC §2), seen from outside: the
database going away makes ``/readyz`` 503 and requests that need it fail in the envelope,
without a traceback or a secret, and both recover when it comes back."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from tests.conftest import make_tenant
from tests.support import web
from tests.support.envelope import is_envelope
from tests.support.oidc import free_port
from tests.support.service import (
    TEST_ENCRYPTION_KEY,
    ServiceProcess,
    create_postgres_database,
    drop_postgres_database,
    psql,
)

LEAK_MARKERS = ("Traceback", "sqlalchemy", "asyncpg", "aiosqlite", "SELECT", 'File "')


def assert_clean_error(response: httpx.Response, status: int, code: str, *secrets: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert is_envelope(body, status) and body["error"]["code"] == code, body
    assert body["error"]["trace_id"] == response.headers["x-request-id"]
    for marker in (*LEAK_MARKERS, *secrets):
        assert marker not in response.text


def own_service(tmp_path: Path, database_url: str | None) -> ServiceProcess:
    """A service of its own (its database can be broken without touching anyone else's)."""
    port = free_port()
    env = {
        "CONNECTORS_DATA_DIR": str(tmp_path / "data"),
        "CONNECTORS_BASE_URL": f"http://127.0.0.1:{port}",
        "CONNECTORS_ENCRYPTION_KEYS": TEST_ENCRYPTION_KEY,
    }
    if database_url is not None:
        env["CONNECTORS_DATABASE_URL"] = database_url
    process = ServiceProcess(port, env, tmp_path / "service.log")
    if database_url is not None:
        process.cli("migrate")
    return process.start()


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    if request.param == "sqlite":
        yield None
        return
    url = create_postgres_database("pc_health")
    yield url
    drop_postgres_database(url)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    url = create_postgres_database("pc_health")
    yield url
    drop_postgres_database(url)


async def rename_table(session, old: str, new: str) -> None:  # type: ignore[no-untyped-def]
    await session.execute(text(f"ALTER TABLE {old} RENAME TO {new}"))
    await session.commit()


def test_an_unexpected_exception_is_a_500_in_the_envelope_and_nothing_more(
    tmp_path: Path, database_url: str | None
) -> None:
    service = own_service(tmp_path, database_url)
    try:
        tenant = make_tenant(service)
        listing = f"{service.api}?organization_id={tenant.organization_id}"
        assert web.get(listing, headers=tenant.headers).status_code == 200

        # A table the listing reads is gone: a fault no handler anticipates.
        service.run_db(lambda session, runtime: rename_table(session, "connections", "gone"))
        try:
            crashed = web.get(listing, headers=tenant.headers)
            assert_clean_error(crashed, 500, "INTERNAL_ERROR", tenant.api_key, "gone")
        finally:
            service.run_db(lambda session, runtime: rename_table(session, "gone", "connections"))
        assert web.get(listing, headers=tenant.headers).status_code == 200
        logs = service.logs()
        assert crashed.headers["x-request-id"] in logs  # the crash is logged, by its trace id
        assert tenant.api_key not in logs
    finally:
        service.stop()


def test_readyz_is_503_while_the_database_is_down_and_200_once_it_is_back(
    tmp_path: Path, postgres_url: str
) -> None:
    service = own_service(tmp_path, postgres_url)
    name = postgres_url.rsplit("/", 1)[1]
    try:
        tenant = make_tenant(service)
        listing = f"{service.api}?organization_id={tenant.organization_id}"
        assert web.get(f"{service.base_url}/readyz").json() == {"status": "ok"}

        # The database refuses new connections and those the service holds are cut.
        psql("postgres", f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        psql(
            "postgres",
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'",
        )
        try:
            assert_clean_error(
                web.get(f"{service.base_url}/readyz", timeout=30), 503, "SERVICE_UNAVAILABLE"
            )
            assert web.get(f"{service.base_url}/livez").json() == {"status": "ok"}
            down = web.get(listing, headers=tenant.headers, timeout=30)
            assert down.status_code >= 500
            assert_clean_error(down, down.status_code, down.json()["error"]["code"], tenant.api_key)
        finally:
            psql("postgres", f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        assert web.get(f"{service.base_url}/readyz").json() == {"status": "ok"}
        assert web.get(listing, headers=tenant.headers).status_code == 200
        assert tenant.api_key not in service.logs()
    finally:
        service.stop()
