"""No token, code, state, secret or API key reaches a log line — captured from a real run.

Beyond the flow below, every process's output in the session is scanned for every secret issued
during it when the session ends (``no_secret_in_any_output`` in tests/conftest.py, with the
record of tests/support/outputs.py); the tests here also check that record itself: that it holds
what the provider issued, and finds a secret wherever it shows up.
"""

from __future__ import annotations

import sys
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx

from personal_connectors.logs import _PATTERNS, MARKERS, redact
from personal_connectors.models import Connection
from personal_connectors.tokens.vault import TokenVault
from tests.conftest import CLIENT_SECRET, Tenant
from tests.flows.conftest import authorize_and_consent, follow_callback
from tests.support import outputs
from tests.support.outputs import RECORD, SessionRecord
from tests.support.service import ServiceProcess


def test_a_whole_flow_leaves_no_secret_in_the_logs(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess
) -> None:
    offset = len(service.logs())
    flow = authorize_and_consent(api, tenant)
    code = parse_qs(urlsplit(flow.callback_url).query)["code"][0]
    connection_id = follow_callback(flow.callback_url).json()["data"]["connection_id"]
    follow_callback(flow.callback_url)  # a replay, refused and logged
    api.post(
        "/complete-oauth",
        params=tenant.org,
        headers=tenant.headers,
        json={"state_token": flow.state},
    )

    async def tokens(session, runtime):  # type: ignore[no-untyped-def]
        connection = await session.get(Connection, connection_id)
        vault = TokenVault(runtime.sealer)
        return vault.access_token(connection), vault.refresh_token(connection)

    access_token, refresh_token = service.run_db(tokens)
    api.delete(f"/{connection_id}", headers=tenant.headers)
    api.get("", params=tenant.org, headers=tenant.one_off_headers)  # a wrong key

    logs = service.logs()[offset:]
    assert "/v1/personal-connectors/callback" in logs  # the access log did record the requests
    for secret in (tenant.api_key, flow.state, code, access_token, refresh_token, CLIENT_SECRET):
        assert secret and secret not in logs
    # The session's record holds what the provider issued in this flow, so the scan at the
    # session's end looks for it in every output.
    issued = RECORD.all_secrets()
    assert issued.get(code) == "code"
    assert issued.get(access_token) == "access_token" and issued.get(refresh_token)
    assert {"code_verifier", "id_token", "client_secret", "api_key"} <= set(issued.values())


def test_a_cli_command_that_issues_nothing_may_print_no_key() -> None:
    record = SessionRecord()
    key = "ak_" + "k" * 40
    printing = [sys.executable, "-c", f"print({key!r})"]
    outputs.run(printing, "connectors api-keys create", record=record)
    assert record.leaks() == []
    outputs.run(printing, "connectors webhooks list", record=record)
    assert record.leaks() == ["api_key (by its shape) in connectors webhooks list (output 2)"]


def test_the_session_scan_finds_a_secret_wherever_it_is_not_issued(tmp_path: Path) -> None:
    record = SessionRecord()
    token = "tok_" + "A1b2" * 8
    jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXNpZ25hdHVyZQ"
    record.add_secret(token, "refresh_token")
    record.add_secret(jwt, "id_token")
    log = tmp_path / "service.log"
    log.write_text(f"INFO refreshed with {token}.\nDEBUG body={jwt}&x=1\n")
    record.watch(log, "server log")
    key = "ak_" + "k" * 40
    record.record("connectors api-keys create", f'{{"key": "{key}"}}', issues=[key])
    record.record("connectors api-keys list", f"| {key} |", "")
    record.record("connectors refresher --once", '{"refreshed": 1}', "")
    assert record.leaks() == [
        "api_key (by its shape) in connectors api-keys list (output 2)",
        "id_token in server log",
        "refresh_token in server log",
    ]


def test_the_redaction_filter_catches_accidents() -> None:
    line = redact(
        "GET /callback?code=abc123&state=state_Zm9vYmFyYmF6cXV4 Authorization: Bearer eyJhbGciOi.x.y "
        'X-API-Key ak_ABCDEFGHIJKLMNOPQRSTUVWXYZ {"refresh_token": "r-secret"} client_secret=s3cr3t'
    )
    for secret in (
        "abc123",
        "Zm9vYmFyYmF6cXV4",
        "eyJhbGciOi",
        "ABCDEFGHIJKLMNOP",
        "r-secret",
        "s3cr3t",
    ):
        assert secret not in line


def test_webhook_secrets_and_url_credentials_are_redacted() -> None:
    line = redact(
        "endpoint https://hook-user:hunter2pass@hooks.example.test/in "
        "or https://ghp_bareToken1234@hooks.example.test/in "
        "signed with whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    )
    assert "hunter2pass" not in line and "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" not in line
    assert "ghp_bareToken1234" not in line
    assert "hooks.example.test/in" in line  # the rest of the line stays readable


# Minimal texts that each redaction pattern matches, in the letter cases the patterns accept.
ONE_SECRET_EACH = [
    "key ak_ABCDEFGH12",
    "flow state_abcdefgh-1",
    "session cs_abcdefgh_1",
    "launch lt_abcdefgh",
    "binding fb_ABCDEFGH",
    "signed whsec_abcd+/efgh",
    "to HTTPS://user@host/in",
    "to git+ssh://TOKEN@host",
    "header BEARER abc.def",
    "header basic dXNlcjpwYXNz",
    # Letters a case-blind pattern takes for "s" and "i" (long s, dotless i).
    "header ba\u017fic dXNlcjpwYXNz",
    "header bas\u0131c dXNlcjpwYXNz",
    "header BAS\u0130C dXNlcjpwYXNz",  # dotted capital I: lower-cased it is two characters
    "query TOKEN=abc",
    'body {"Refresh_Token" : "abc"}',
    "form code:xyz",
]


def test_the_quick_check_lets_no_pattern_match_through() -> None:
    """``redact`` skips its scans when an ASCII text holds none of ``MARKERS``: every pattern
    has a sample here, and each sample comes out exactly as the seven scans alone would leave
    it."""

    def scanned(text: str) -> str:
        for pattern, replacement in _PATTERNS:
            text = pattern.sub(replacement, text)
        return text

    for pattern, _ in _PATTERNS:
        assert any(pattern.search(sample) for sample in ONE_SECRET_EACH), pattern.pattern
    for sample in ONE_SECRET_EACH:
        assert redact(sample) == scanned(sample) != sample
    access_line = "POST /v1/personal-connectors/conn_0a1b/token 200 0.3ms req_9f8e"
    assert not any(marker in access_line.lower() for marker in MARKERS)
    assert redact(access_line) == access_line
