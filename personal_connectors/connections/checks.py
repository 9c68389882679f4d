"""Checking that a connection's access token still works, with one read-only provider call.

The call is the catalog entry's declared ``test_request`` or, for entries without one, the
identity call the flow itself made. Whatever happens at the provider becomes an outcome with a
message safe to show a person: a provider that is down is a failed check, never an API error,
and no message is ever built from a URL, a header or a body (where a token could sit).

The outcome is stored on the connection in existing columns, and health is derived from them:
``last_checked_at`` says a check ran, ``last_sync_at`` when one last succeeded, and
``status_reason`` on an *active* connection why the last one failed. A ``needs_reauth``
connection keeps the reason its refresh token was rejected: that is the truth that matters.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from personal_connectors.apps.gateway import endpoints_for
from personal_connectors.connections.repository import ListFilters
from personal_connectors.connections.schemas import HealthStatus
from personal_connectors.connections.service import ConnectionService
from personal_connectors.exceptions import APIError
from personal_connectors.identity.service import OrgAccess
from personal_connectors.mcp_servers.service import McpService, Probe, server_url
from personal_connectors.models import Connection, ConnectionStatus, utcnow
from personal_connectors.oauth.client import TokenGrant
from personal_connectors.oauth.errors import ProviderFailure
from personal_connectors.oauth.identity import read_identity
from personal_connectors.outbound.guard import DestinationRefused
from personal_connectors.providers.answers import says_not_ok
from personal_connectors.providers.api_auth import apply_api_auth
from personal_connectors.providers.schema import IdentityMapping, ProviderEntry, TestRequest
from personal_connectors.providers.templating import fill, token_headers
from personal_connectors.runtime import Runtime
from personal_connectors.storage.paging import Page, PageRequest
from personal_connectors.tokens.service import KEPT_MODES, TokenService
from personal_connectors.tokens.vault import TokenVault

logger = logging.getLogger(__name__)

IDENTITY_ACTION = "read_identity"
# The check of a connection whose connector runs an MCP server: a session and its tool list.
MCP_ACTION = "mcp_list_tools"
SUCCESS_MESSAGE = "Operation completed successfully"
# The answers that prove a call worked when the entry declares none (`expect_status`).
SUCCESS_STATUSES = range(200, 300)
# `forceCheck` on the list: how many providers are asked at once, and for how long in all.
CHECK_CONCURRENCY = 4
CHECK_TIME_LIMIT_SECONDS = 10.0


class CheckFailed(Exception):
    """The provider answered, and the answer says the token does not work (message is safe)."""


@dataclass(frozen=True)
class CheckOutcome:
    success: bool
    action: str
    message: str
    execution_time_ms: int | None
    tested_at: datetime
    # The MCP server's side, for a connection that has one.
    mcp: Probe | None = None

    @classmethod
    def not_run(cls, action: str, message: str) -> CheckOutcome:
        """A check that failed before any call to the provider (no entry, no usable token)."""
        return cls(False, action, message, None, utcnow())


@dataclass(frozen=True)
class Health:
    status: HealthStatus
    reason: str | None


def health_of(connection: Connection) -> Health:
    """Health as the stored state says it, without asking the provider (see the module doc)."""
    if connection.status == ConnectionStatus.NEEDS_REAUTH:
        return Health("unhealthy", connection.status_reason or "The account must be reconnected.")
    if connection.last_checked_at is None:
        return Health("unknown", None)
    if connection.status_reason:
        return Health("unhealthy", connection.status_reason)
    return Health("healthy", None)


def record_outcome(connection: Connection, outcome: CheckOutcome) -> None:
    """Store what ``health_of`` reads back."""
    connection.record_check(outcome.tested_at, outcome.success, outcome.message)


def action_of(entry: ProviderEntry | None) -> str:
    if entry is not None and entry.mcp is not None:
        return MCP_ACTION
    if entry is not None and entry.test_request is not None:
        return entry.test_request.action
    return IDENTITY_ACTION


class ConnectionChecker:
    """Runs checks for one request: a token from the token service, the call, the record."""

    def __init__(self, session: AsyncSession, runtime: Runtime) -> None:
        self.session = session
        self.runtime = runtime
        self.connections = ConnectionService(session, runtime)

    async def test(self, access: OrgAccess, connection_id: str) -> tuple[Connection, CheckOutcome]:
        connection = await self.connections.get_in(access, connection_id)
        return connection, await self.check(connection)

    async def check(self, connection: Connection) -> CheckOutcome:
        """Check one connection and store the outcome (commits)."""
        outcome = await self._run(connection)
        # A refresh on the way commits in the token service's own sessions: read the row again
        # so the outcome lands on its current status (never on a stale `active`).
        await self.session.refresh(connection)
        record_outcome(connection, outcome)
        await self.session.commit()
        return outcome

    async def page_checked(
        self, access: OrgAccess, page: PageRequest, filters: ListFilters
    ) -> Page[Connection]:
        """A page of the caller's list, each of its connections checked first
        (``forceCheck=true``)."""
        listed = await self.connections.page_for(access, page, filters)
        if not listed.items:
            return listed
        await self._check_each(access, [connection.id for connection in listed.items])
        self.session.expire_all()  # the checks wrote in their own sessions
        return await self.connections.page_for(access, page, filters)

    async def _check_each(self, access: OrgAccess, connection_ids: Sequence[str]) -> None:
        """Side by side, each in its own session (one session cannot serve two tasks).

        Bounded in number and in total time; a check cut short leaves its row as it was.
        """
        gate = asyncio.Semaphore(CHECK_CONCURRENCY)

        async def check_one(connection_id: str) -> None:
            async with gate, self.runtime.sessions() as session:
                checker = ConnectionChecker(session, self.runtime)
                connection = await checker.connections.get_in(access, connection_id)
                await checker.check(connection)

        try:
            async with asyncio.timeout(CHECK_TIME_LIMIT_SECONDS):
                results = await asyncio.gather(
                    *(check_one(connection_id) for connection_id in connection_ids),
                    return_exceptions=True,
                )
        except TimeoutError:
            logger.warning("forced checks stopped after %ss", CHECK_TIME_LIMIT_SECONDS)
            return
        for connection_id, result in zip(connection_ids, results, strict=True):
            if isinstance(result, Exception):
                logger.warning("check of %s failed: %s", connection_id, type(result).__name__)

    async def _run(self, connection: Connection) -> CheckOutcome:
        entry = self.runtime.catalog.get(connection.app_key)
        action = action_of(entry)
        if server_url(self.runtime, connection) is not None:  # (a custom one has no entry)
            server = await McpService(self.session, self.runtime).probe(connection)
            return CheckOutcome(
                server.healthy,
                MCP_ACTION,
                server.message,
                server.response_time_ms,
                server.tested_at,
                mcp=server,
            )
        if entry is None:
            return CheckOutcome.not_run(action, "This connector is no longer offered.")
        credentials = TokenVault(self.runtime.sealer).credentials(connection)
        if connection.auth_mode in KEPT_MODES and credentials is not None:
            # An API key or basic pair (SPEC §10): no token, the fields themselves.
            return await probe(self.runtime, entry, connection.integration_params, credentials)
        try:
            access_token = await TokenService(self.session, self.runtime).valid_access_token(
                connection
            )
        except APIError as exc:  # a rejected refresh token, a provider down while refreshing…
            return CheckOutcome.not_run(action, exc.message)
        if access_token is None:
            return CheckOutcome.not_run(action, "The connection holds no access token.")
        if credentials is not None:  # a minting connection: its fields and its minted token
            values = {**credentials, "access_token": access_token}
            return await probe(self.runtime, entry, connection.integration_params, values)
        return await probe(self.runtime, entry, connection.integration_params, access_token)


async def probe(
    runtime: Runtime,
    entry: ProviderEntry,
    params: Mapping[str, str],
    access_token: str | Mapping[str, str],
) -> CheckOutcome:
    """Make the check call with ``access_token`` (or, for a credentials connection, with its
    fields and any minted ``access_token`` in a mapping), bounded as a whole by the provider
    timeout."""
    limit = runtime.settings.provider_timeout_seconds
    started = time.perf_counter()
    try:
        async with asyncio.timeout(limit):
            await _call(runtime, entry, params, access_token)
        success, message = True, SUCCESS_MESSAGE
    except DestinationRefused as exc:
        success, message = (
            False,
            f"{entry.display_name}: not an allowed destination ({exc.reason}).",
        )
    except (TimeoutError, httpx.TimeoutException):
        success, message = False, f"{entry.display_name} did not answer within {limit:g}s."
    except httpx.TransportError as exc:
        success, message = False, f"{entry.display_name} is unreachable ({type(exc).__name__})."
    except (CheckFailed, ProviderFailure) as exc:
        success, message = False, f"{entry.display_name}: {exc}"
    except APIError as exc:  # the discovery document could not be read
        success, message = False, exc.system_message
    elapsed_ms = round((time.perf_counter() - started) * 1000)
    return CheckOutcome(success, action_of(entry), message, elapsed_ms, utcnow())


async def _call(
    runtime: Runtime,
    entry: ProviderEntry,
    params: Mapping[str, str],
    access_token: str | Mapping[str, str],
) -> None:
    if not isinstance(access_token, str):
        await _credentials_check(runtime, entry, params, access_token)
        return
    if entry.test_request is not None:
        await _test_request(runtime.http, entry.test_request, params, access_token)
        return
    if entry.userinfo is not None and entry.userinfo.from_token_response:
        raise CheckFailed("the catalog entry declares no read-only check call (test_request).")
    endpoints = await endpoints_for(runtime, entry, params)
    grant = TokenGrant(access_token, None, "Bearer", None, None)
    await read_identity(entry, endpoints, grant, runtime.http)


async def _test_request(
    http: httpx.AsyncClient, call: TestRequest, params: Mapping[str, str], access_token: str
) -> None:
    try:
        # Some providers want the token in the path (HubSpot's access-tokens/{access_token}).
        url = fill(call.url, {**params, "access_token": access_token, "token": access_token})
    except KeyError:
        raise CheckFailed("the check call needs a parameter this connection lacks.") from None
    headers = token_headers(call.headers, access_token)
    response = await http.request(call.method, url, headers=headers, json=call.body)
    if response.status_code not in call.expect_status:
        raise CheckFailed(_describe_status(response.status_code))
    if says_not_ok(response):
        raise CheckFailed("the check call answered ok: false.")


async def send_with_credentials(
    runtime: Runtime,
    entry: ProviderEntry,
    params: Mapping[str, str],
    values: Mapping[str, str],
    call: TestRequest | IdentityMapping,
) -> httpx.Response:
    """A declared call (``test_request``, ``userinfo``) made with a credentials connection's
    ``values`` as the entry's ``api_auth`` sends them (a minted ``access_token`` as bearer by
    default), the call's own declared headers, filled from ``values``, on top (SPEC §10)."""
    assert call.url is not None
    sent = apply_api_auth(entry.api_auth, values)
    headers = {"Accept": "application/json", **sent.headers}
    headers.update({name: fill(value, values) for name, value in call.headers.items()})
    body: dict[str, Any] = {}
    if call.body is not None:
        form = isinstance(call, IdentityMapping) and call.body_format == "form"
        body["data" if form else "json"] = call.body
    return await runtime.http.request(
        call.method,
        fill(call.url, params),
        headers=headers,
        params=sent.query or None,
        timeout=runtime.settings.provider_timeout_seconds,
        **body,
    )


async def _credentials_check(
    runtime: Runtime, entry: ProviderEntry, params: Mapping[str, str], values: Mapping[str, str]
) -> None:
    call = entry.test_request or entry.userinfo
    if call is None or call.url is None:
        raise CheckFailed("the catalog entry declares no read-only check call (test_request).")
    response = await send_with_credentials(runtime, entry, params, values, call)
    expected = entry.test_request.expect_status if entry.test_request else SUCCESS_STATUSES
    if response.status_code in (401, 403):
        raise CheckFailed(f"the credentials were refused (HTTP {response.status_code}).")
    if response.status_code not in expected:
        raise CheckFailed(_describe_status(response.status_code))


def _describe_status(status: int) -> str:
    if status in (401, 403):
        return f"the access token was refused (HTTP {status})."
    return f"the check call answered HTTP {status}."
