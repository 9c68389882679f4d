"""``CONNECTORS_LOG_FORMAT=json`` (SPEC §12): every line the service writes is one JSON object —
from its start through a whole OAuth flow at the real OpenID provider — access lines carry the
trace id, route template, status and duration, and no line holds a secret."""

from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from personal_connectors.logs import JsonFormatter, RedactingFilter
from personal_connectors.models import Connection
from personal_connectors.tokens.vault import TokenVault
from tests.conftest import CLIENT_SECRET, make_tenant
from tests.flows.conftest import authorize_and_consent, follow_callback, start_flow
from tests.support.outputs import RECORD
from tests.telemetry.conftest import Observed, hand_out

CALLBACK_ROUTE = "/v1/personal-connectors/callback"


def records(text: str) -> list[dict[str, Any]]:
    """Each line as its JSON object; fails on the first line that is not one."""
    parsed = []
    for number, line in enumerate(text.splitlines(), 1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise AssertionError(f"line {number} is not JSON: {line[:200]!r}") from None
        assert isinstance(record, dict), line
        parsed.append(record)
    return parsed


def test_every_line_of_a_whole_flow_is_json_and_holds_no_secret(
    observed: Observed, observed_api: httpx.Client
) -> None:
    tenant = make_tenant(observed.service)
    offset = len(observed.service.logs())
    flow = authorize_and_consent(observed_api, tenant)
    code = parse_qs(urlsplit(flow.callback_url).query)["code"][0]
    connected = follow_callback(flow.callback_url)
    assert connected.status_code == 200, connected.text
    connection_id = connected.json()["data"]["connection_id"]
    assert follow_callback(flow.callback_url).status_code == 400  # a replay, refused and logged
    completed = observed_api.post(
        "/complete-oauth",
        params=tenant.org,
        headers=tenant.headers,
        json={"state_token": flow.state},
    )
    assert completed.status_code == 200
    assert hand_out(observed_api, tenant, connection_id, force_refresh="true").status_code == 200
    # A flow left waiting, and a complete-oauth call that waits for it (and logs that it does).
    pending = start_flow(observed_api, tenant)["state"]
    waited = observed_api.post(
        "/complete-oauth",
        params={**tenant.org, "wait": "1"},
        headers=tenant.headers,
        json={"state_token": pending},
    )
    assert waited.status_code == 200 and waited.json()["connected"] is False

    async def tokens(session, runtime):  # type: ignore[no-untyped-def]
        connection = await session.get(Connection, connection_id)
        vault = TokenVault(runtime.sealer)
        return vault.access_token(connection), vault.refresh_token(connection)

    access_token, refresh_token = observed.service.run_db(tokens)
    assert observed_api.delete(f"/{connection_id}", headers=tenant.headers).status_code == 204
    wrong_key = tenant.one_off_headers
    assert observed_api.get("", params=tenant.org, headers=wrong_key).status_code == 401

    whole = observed.service.logs()
    every = records(whole)  # the start-up lines of both workers included
    assert {"time", "level", "logger", "message", "process"} <= set(every[0])
    flow_lines = records(whole[offset:])
    secrets = (
        tenant.api_key,
        flow.state,
        pending,
        code,
        access_token,
        refresh_token,
        CLIENT_SECRET,
        observed.metrics_token,
    )
    for secret in secrets:
        assert secret and secret not in whole
    access = [r for r in flow_lines if r["logger"] == "personal_connectors.access"]
    callbacks = [r for r in access if r["route"] == CALLBACK_ROUTE]
    assert [r["status"] for r in callbacks] == [200, 400]
    for record in access:
        assert record["trace_id"].startswith("req_")
        assert isinstance(record["duration_ms"], float) and record["duration_ms"] >= 0
        assert record["route"] is None or record["route"].startswith("/")  # None: no route
    assert "/v1/personal-connectors/{connection_id}/token" in {r["route"] for r in access}
    # A line written while a request is served carries that request's trace id: the waiting
    # complete-oauth call's, logged by the flow service.
    waiting = [r for r in flow_lines if "complete-oauth waits up to" in r["message"]]
    completions = {r["trace_id"] for r in access if r["route"].endswith("/complete-oauth")}
    assert len(waiting) == 1 and waiting[0]["trace_id"] in completions
    # The session's record holds what the provider issued, for the scan of every output.
    assert RECORD.all_secrets().get(code) == "code"


def test_the_json_formatter_redacts_extra_fields_and_exceptions() -> None:
    record = logging.LogRecord(
        "personal_connectors.test", logging.ERROR, __file__, 1, "calling %s", ("x?code=abc1",), None
    )
    record.detail = "Authorization: Bearer sekret-token-value"
    try:
        raise ValueError("refresh_token=leaked-value")
    except ValueError:
        import sys

        record.exc_info = sys.exc_info()
    assert RedactingFilter().filter(record)
    line = json.loads(JsonFormatter().format(record))
    assert line["level"] == "ERROR" and line["logger"] == "personal_connectors.test"
    assert "abc1" not in line["message"]
    assert "sekret-token-value" not in line["detail"]
    assert "leaked-value" not in line["exception"] and "ValueError" in line["exception"]
    assert "trace_id" not in line  # no request being served
