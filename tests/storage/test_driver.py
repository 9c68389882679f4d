"""The token path's reader on PostgreSQL (with the token lookup's statements): reads asked for
together share one round trip, and each gets exactly the row it would have got alone; a failed
round trip fails every read in it."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from personal_connectors.identity.records import KeyRecord
from personal_connectors.identity.service import IdentityService, presented_key_hash
from personal_connectors.models import KeyKind
from personal_connectors.runtime import Runtime
from personal_connectors.storage.driver import PostgresReader
from personal_connectors.tokens.repository import POSTGRES_LOOKUP, POSTGRES_LOOKUPS
from tests.conftest import PROVIDER_KEY, Tenant, make_tenant
from tests.support.service import ServiceProcess

# Only PostgreSQL has a round trip to share; the SQLite reader runs each read on its own.
pytestmark = pytest.mark.parametrize("service", ["postgres"], indirect=True)


def imported_connections(
    service: ServiceProcess, tenant: Tenant, count: int, tmp_path: Path
) -> list[str]:
    """``count`` connections of the tenant's user, through the operator's import command."""
    lines = tmp_path / f"{tenant.user_id}.jsonl"
    lines.write_text(
        "".join(
            json.dumps(
                {
                    "user_id": tenant.user_id,
                    "app_key": PROVIDER_KEY,
                    "account_id": f"account-{number}",
                    "access_token": f"at-{os.urandom(8).hex()}",
                    "expires_at": "2030-01-01T00:00:00Z",
                }
            )
            + "\n"
            for number in range(count)
        )
    )
    service.cli("connections", "import", str(lines), "--org", tenant.organization_id)
    listed = json.loads(
        service.cli(
            "connections",
            "list",
            "--org",
            tenant.organization_id,
            "--user",
            tenant.user_id,
            "--json",
        ).stdout
    )
    assert len(listed) == count
    return [row["id"] for row in listed]


Arguments = tuple[str, str, str, str | None]
# Where a lookup row has the membership's role and the connection's id (after the key's columns
# come the role, the end user's internal user, then the connection's columns).
ROLE = len(KeyRecord._fields)
CONNECTION_ID = ROLE + 2


def service_key_and_end_user(service: ServiceProcess, tenant: Tenant) -> tuple[str, Tenant]:
    """A service key of the tenant's organization, and the end user "eu-1" it acts for (as a
    tenant whose user is the end user's internal user)."""

    async def work(session, runtime):  # type: ignore[no-untyped-def]
        identities = IdentityService(session)
        issued = await identities.create_organization_key(tenant.organization_id, KeyKind.SERVICE)
        end_user = await identities.ensure_end_user(tenant.organization_id, "eu-1")
        return issued.plaintext, end_user.user_id

    key, user_id = service.run_db(work)
    return key, Tenant(tenant.organization_id, user_id, key, "")


def lookups(service: ServiceProcess, tmp_path: Path) -> list[Arguments]:
    """Reads that find everything, and each way a read finds less: another user's connection,
    an unknown connection, an organization the key's user is not in, an unknown key; and a
    service key's reads for an end user: its connection, and another end user's."""
    mine, theirs = make_tenant(service), make_tenant(service)
    my_connections = imported_connections(service, mine, 6, tmp_path)
    their_connection = imported_connections(service, theirs, 1, tmp_path)[0]
    key = presented_key_hash(mine.api_key)
    service_key, end_user = service_key_and_end_user(service, mine)
    end_user_connection = imported_connections(service, end_user, 1, tmp_path)[0]

    def read(
        key_hash: str, organization_id: str, connection_id: str, end_user_id: str | None = None
    ) -> Arguments:
        return (key_hash, organization_id, connection_id, end_user_id)

    service_hash = presented_key_hash(service_key)
    return [
        *(read(key, mine.organization_id, each) for each in my_connections),
        read(key, mine.organization_id, their_connection),
        read(key, mine.organization_id, "conn_unknown"),
        read(key, theirs.organization_id, my_connections[0]),
        read(presented_key_hash("ak_" + "x" * 40), mine.organization_id, my_connections[1]),
        read(presented_key_hash(theirs.api_key), theirs.organization_id, their_connection),
        read(service_hash, mine.organization_id, end_user_connection, "eu-1"),
        read(service_hash, mine.organization_id, end_user_connection, "eu-2"),
        read(service_hash, mine.organization_id, my_connections[2], "eu-1"),
    ]


def in_runtime(service: ServiceProcess, work: Callable[[PostgresReader], Awaitable[Any]]) -> Any:
    async def main(_session: Any, runtime: Runtime) -> Any:
        assert isinstance(runtime.hot_reader, PostgresReader)
        return await work(runtime.hot_reader)

    return service.run_db(main)


def fetch(reader: PostgresReader, arguments: Arguments) -> Any:
    return reader.fetch_row(POSTGRES_LOOKUP, POSTGRES_LOOKUPS, arguments)


def test_concurrent_reads_share_one_round_trip_and_each_gets_its_own_row(
    service: ServiceProcess, tmp_path: Path
) -> None:
    reads = lookups(service, tmp_path)

    async def work(reader: PostgresReader) -> tuple[list[Any], list[Any], list[str]]:
        expected = [await reader.fetch_alone(POSTGRES_LOOKUP, each) for each in reads]
        statements: list[str] = []
        query = reader.query

        async def counted(method: str, sql: str, arguments: Any) -> Any:
            statements.append(sql)
            return await query(method, sql, arguments)

        reader.query = counted  # type: ignore[method-assign]
        together = await asyncio.gather(*(fetch(reader, each) for each in reads))
        return expected, list(together), statements

    expected, together, statements = in_runtime(service, work)
    assert together == expected
    assert len(statements) == 1 and "unnest" in statements[0]
    # The reads found what each case should: rows for the tenant's own connections, a key row
    # with no connection or no membership for the others, nothing for an unknown key.
    found = [row is not None and row[CONNECTION_ID] is not None for row in together]
    assert found == [True] * 6 + [False, False, False, False, True] + [True, False, False]
    assert together[9] is None
    assert together[8] is not None and together[8][ROLE] is None  # no role: not a member


def test_a_failed_round_trip_fails_every_read_that_shared_it(
    service: ServiceProcess, tmp_path: Path
) -> None:
    reads = lookups(service, tmp_path)

    async def work(reader: PostgresReader) -> tuple[list[Any], int]:
        calls = 0

        async def broken(method: str, sql: str, arguments: Any) -> Any:
            nonlocal calls
            calls += 1
            raise ConnectionResetError("the database went away")

        reader.query = broken  # type: ignore[method-assign]
        outcomes = await asyncio.wait_for(
            asyncio.gather(*(fetch(reader, each) for each in reads), return_exceptions=True),
            timeout=10,
        )
        return list(outcomes), calls

    outcomes, calls = in_runtime(service, work)
    assert len(outcomes) == len(reads)
    assert all(isinstance(outcome, ConnectionResetError) for outcome in outcomes)
    assert calls == 1  # an unreachable database is not asked again once per read


def test_a_read_cancelled_while_it_waits_leaves_the_others_answered(
    service: ServiceProcess, tmp_path: Path
) -> None:
    reads = lookups(service, tmp_path)

    async def work(reader: PostgresReader) -> tuple[list[Any], list[Any]]:
        expected = [await reader.fetch_alone(POSTGRES_LOOKUP, each) for each in reads]
        tasks = [asyncio.ensure_future(fetch(reader, each)) for each in reads]
        await asyncio.sleep(0)  # every read has joined the batch
        tasks[0].cancel()
        outcomes = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 10)
        return expected, list(outcomes)

    expected, outcomes = in_runtime(service, work)
    assert isinstance(outcomes[0], asyncio.CancelledError)
    assert outcomes[1:] == expected[1:]


def test_a_batch_refused_for_another_reason_answers_each_read_alone(
    service: ServiceProcess, tmp_path: Path
) -> None:
    """A statement PostgreSQL refuses for one request's values must not fail the others: the
    batch falls back to one read per request, each answered as it would have been alone."""
    reads = lookups(service, tmp_path)

    async def work(reader: PostgresReader) -> tuple[list[Any], list[Any], list[Any]]:
        expected = [await reader.fetch_alone(POSTGRES_LOOKUP, each) for each in reads]

        query = reader.query

        async def refusing_many(method: str, sql: str, arguments: Any) -> Any:
            if sql == POSTGRES_LOOKUPS:
                raise ValueError("a value the statement cannot take")
            return await query(method, sql, arguments)

        reader.query = refusing_many  # type: ignore[method-assign]
        together = await asyncio.gather(*(fetch(reader, each) for each in reads))
        # Alone, one read fails (its own values refused) and only its caller sees it.
        fetch_alone = reader.fetch_alone

        async def refusing_the_third(statement: Any, arguments: Any) -> Any:
            if arguments == reads[2]:
                raise ValueError("a value the statement cannot take")
            return await fetch_alone(statement, arguments)

        reader.fetch_alone = refusing_the_third  # type: ignore[method-assign]
        isolated = await asyncio.gather(
            *(fetch(reader, each) for each in reads), return_exceptions=True
        )
        return expected, list(together), list(isolated)

    expected, together, isolated = in_runtime(service, work)
    assert together == expected
    assert isinstance(isolated[2], ValueError)
    assert isolated[:2] + isolated[3:] == expected[:2] + expected[3:]
