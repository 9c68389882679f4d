"""The check call itself, against scripted provider answers (no database, no real provider):
what counts as success, and that every failure is an outcome with a message, never a raise."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from personal_connectors.config import Settings
from personal_connectors.connections.checks import (
    SUCCESS_MESSAGE,
    CheckOutcome,
    health_of,
    probe,
    record_outcome,
)
from personal_connectors.models import Connection, ConnectionStatus, utcnow
from personal_connectors.providers.schema import ProviderEntry
from personal_connectors.runtime import Runtime
from tests.support.service import TEST_ENCRYPTION_KEY

TOKEN = "at-0123456789-secret-token-value"
Handler = Callable[[httpx.Request], Awaitable[httpx.Response]]


def entry(**fields: Any) -> ProviderEntry:
    base: dict[str, Any] = {
        "key": "acme",
        "display_name": "Acme",
        "authorization_url": "https://acme.example/authorize",
        "token_url": "https://acme.example/token",
        "userinfo": {"url": "https://api.acme.example/me", "id_path": "id"},
        "test_request": {
            "url": "https://api.acme.example/v1/account",
            "headers": {"X-Api-Version": "2"},
            "action": "read_account",
        },
    }
    return ProviderEntry.model_validate({**base, **fields})


def run_probe(
    tmp_path: Path,
    provider: ProviderEntry,
    handler: Handler,
    *,
    params: dict[str, str] | None = None,
    timeout: float = 5.0,
) -> tuple[CheckOutcome, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    async def recording(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return await handler(request)

    async def main() -> CheckOutcome:
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            data_dir=tmp_path,
            encryption_keys=TEST_ENCRYPTION_KEY,
            provider_timeout_seconds=timeout,
        )
        runtime = Runtime.start(settings, transport=httpx.MockTransport(recording))
        try:
            return await probe(runtime, provider, params or {}, TOKEN)
        finally:
            await runtime.close()

    return asyncio.run(main()), seen


def answer(status: int, body: object) -> Handler:
    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json=body)

    return handler


def test_the_declared_call_carries_the_token_and_its_headers(tmp_path: Path) -> None:
    outcome, [request] = run_probe(tmp_path, entry(), answer(200, {"id": 7}))
    assert outcome.success is True and outcome.message == SUCCESS_MESSAGE
    assert outcome.action == "read_account"
    assert outcome.execution_time_ms is not None and 0 <= outcome.execution_time_ms < 5000
    assert request.method == "GET" and str(request.url) == "https://api.acme.example/v1/account"
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.headers["x-api-version"] == "2"


def test_a_post_check_sends_its_declared_body(tmp_path: Path) -> None:
    provider = entry(
        test_request={
            "method": "POST",
            "url": "https://api.acme.example/graphql",
            "body": {"query": "{ viewer { id } }"},
        }
    )
    outcome, [request] = run_probe(tmp_path, provider, answer(200, {"data": {}}))
    assert outcome.success is True and outcome.action == "read_profile"
    assert request.method == "POST" and json.loads(request.content) == {
        "query": "{ viewer { id } }"
    }


@pytest.mark.parametrize(("status", "words"), [(401, "refused (HTTP 401)"), (500, "HTTP 500")])
def test_a_refusal_is_a_failed_check_that_never_quotes_the_token(
    tmp_path: Path, status: int, words: str
) -> None:
    outcome, _ = run_probe(tmp_path, entry(), answer(status, {"error": f"bad token {TOKEN}"}))
    assert outcome.success is False
    assert words in outcome.message and outcome.message.startswith("Acme")
    assert TOKEN not in outcome.message


def test_an_ok_false_answer_is_a_failed_check(tmp_path: Path) -> None:
    outcome, _ = run_probe(tmp_path, entry(), answer(200, {"ok": False, "error": "invalid_auth"}))
    assert outcome.success is False and "ok: false" in outcome.message


def test_url_variables_are_filled_from_the_connection_and_the_token(tmp_path: Path) -> None:
    provider = entry(
        integration_params={
            "subdomain": {"pattern": "^[a-z]+$"},
            "region": {"pattern": "^[a-z]+$", "required": False},
        },
        test_request={"url": "https://{subdomain}.acme.example/tokens/{access_token}"},
    )
    outcome, [request] = run_probe(
        tmp_path, provider, answer(200, {}), params={"subdomain": "team"}
    )
    assert outcome.success is True
    assert str(request.url) == f"https://team.acme.example/tokens/{TOKEN}"

    # A connection made before the operator added {region} to the entry has no value for it.
    lacking = entry(
        integration_params={"region": {"pattern": "^[a-z]+$"}},
        test_request={"url": "https://{region}.acme.example/me"},
    )
    outcome, seen = run_probe(tmp_path, lacking, answer(200, {}))
    assert outcome.success is False and "lacks" in outcome.message and seen == []


def test_an_unreachable_provider_is_a_failed_check(tmp_path: Path) -> None:
    async def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    outcome, _ = run_probe(tmp_path, entry(), refuse)
    assert outcome.success is False and outcome.message == "Acme is unreachable (ConnectError)."


def test_a_stalling_provider_is_cut_off_at_the_provider_timeout(tmp_path: Path) -> None:
    async def stall(request: httpx.Request) -> httpx.Response:
        await asyncio.Event().wait()  # never answers: only the timeout ends the wait
        return httpx.Response(200)

    outcome, _ = run_probe(tmp_path, entry(), stall, timeout=0.2)
    assert outcome.success is False
    assert outcome.message == "Acme did not answer within 0.2s."
    assert outcome.execution_time_ms is not None and outcome.execution_time_ms < 2000


def test_without_a_declared_call_the_identity_call_is_the_check(tmp_path: Path) -> None:
    outcome, [request] = run_probe(tmp_path, entry(test_request=None), answer(200, {"id": "42"}))
    assert outcome.success is True and outcome.action == "read_identity"
    assert str(request.url) == "https://api.acme.example/me"
    assert request.headers["authorization"] == f"Bearer {TOKEN}"

    outcome, _ = run_probe(tmp_path, entry(test_request=None), answer(401, {}))
    assert outcome.success is False and "401" in outcome.message


def test_identity_from_the_token_answer_cannot_be_checked(tmp_path: Path) -> None:
    provider = entry(test_request=None, userinfo={"from_token_response": True, "id_path": "uid"})
    outcome, seen = run_probe(tmp_path, provider, answer(200, {}))
    assert outcome.success is False and "test_request" in outcome.message and seen == []


def connection(**fields: Any) -> Connection:
    return Connection(id="conn_x", status=ConnectionStatus.ACTIVE, status_reason=None, **fields)


def outcome_of(success: bool, message: str = "Acme: refused") -> CheckOutcome:
    return CheckOutcome(success, "read_identity", message, 3, utcnow())


def test_health_is_derived_from_the_recorded_outcomes() -> None:
    row = connection(last_checked_at=None, last_sync_at=None)
    assert health_of(row).status == "unknown"
    record_outcome(row, outcome_of(False))
    assert (health_of(row).status, health_of(row).reason) == ("unhealthy", "Acme: refused")
    assert row.last_sync_at is None and row.last_checked_at is not None
    passed = outcome_of(True)
    record_outcome(row, passed)
    assert (health_of(row).status, health_of(row).reason) == ("healthy", None)
    assert row.last_sync_at == row.last_checked_at == passed.tested_at


def test_a_check_never_overwrites_why_a_connection_needs_reauthorization() -> None:
    row = connection(last_checked_at=None, last_sync_at=None)
    row.status, row.status_reason = ConnectionStatus.NEEDS_REAUTH, "invalid_grant: revoked"
    assert (health_of(row).status, health_of(row).reason) == ("unhealthy", "invalid_grant: revoked")
    record_outcome(row, outcome_of(False, "something else"))
    record_outcome(row, outcome_of(True))
    assert row.status_reason == "invalid_grant: revoked" and health_of(row).status == "unhealthy"
