"""The service as an MCP server (SPEC §11): `/mcp` offers the enabled tools of all the
caller's connections that have an MCP server, `<prefix>__<tool>`, and forwards `tools/call`
with a fresh token; `/{id}/mcp` does the same for one connection under the server's own names.
Spoken to with the official SDK's client, as an assistant would."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx
import httpx2
import pytest
from mcp import ClientSession, MCPError
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult

from personal_connectors.identity import pct
from tests.conftest import Tenant
from tests.flows.conftest import authorize_and_consent, follow_callback
from tests.mcp_servers.conftest import DOWN_KEY, KEYED_KEY, MCP_KEY, PLAIN_KEY, keyed_connection
from tests.support import outputs
from tests.support.mcp_server import TOOLS, McpServer
from tests.support.platform import make_organization_key
from tests.support.service import ServiceProcess

T = TypeVar("T")
TOOL_NAMES = [tool.name for tool in TOOLS]


def connect(api: httpx.Client, caller: Tenant, connector_type: str, login: str) -> str:
    flow = authorize_and_consent(api, caller, login=login, connector_type=connector_type)
    response = follow_callback(flow.callback_url)
    assert response.status_code == 200, response.text
    return str(response.json()["data"]["connection_id"])


def disable(api: httpx.Client, caller: Tenant, connection_id: str) -> None:
    response = api.patch(
        f"/connections/{connection_id}/active",
        params=caller.org,
        headers=caller.headers,
        json={"is_active": False},
    )
    assert response.status_code == 200, response.text


def gateway(
    service: ServiceProcess,
    caller: Tenant,
    work: Callable[[ClientSession], Awaitable[T]],
    connection_id: str | None = None,
) -> T:
    path = f"/{connection_id}/mcp" if connection_id else "/mcp"
    query = "&".join(f"{name}={value}" for name, value in caller.org.items())
    url = f"{service.api}{path}?{query}"

    async def session() -> T:
        async with (
            httpx2.AsyncClient(headers=caller.headers, timeout=30) as client,
            streamable_http_client(url, http_client=client) as (read, write),
            ClientSession(read, write) as opened,
        ):
            await opened.initialize()
            return await work(opened)

    try:
        return asyncio.run(session())
    except BaseExceptionGroup as group:  # the SDK's task groups wrap what the session raised
        leaf: BaseException = group
        while isinstance(leaf, BaseExceptionGroup):
            leaf = leaf.exceptions[0]
        raise leaf from None


async def names(session: ClientSession) -> list[str]:
    return [tool.name for tool in (await session.list_tools()).tools]


def call(name: str, arguments: dict[str, Any] | None = None) -> Callable[[ClientSession], Any]:
    async def work(session: ClientSession) -> Any:
        return await session.call_tool(name, arguments)

    return work


def test_the_gateway_offers_every_connections_tools_under_its_app_key(
    api: httpx.Client, mcp_service: ServiceProcess, tenant: Tenant, upstream: McpServer
) -> None:
    connect(api, tenant, MCP_KEY, "ada")
    connect(api, tenant, PLAIN_KEY, "ada")  # no MCP server: nothing to offer
    down = connect(api, tenant, DOWN_KEY, "ada")  # a server nobody answers at: left out

    listed = gateway(mcp_service, tenant, names)

    assert listed == [f"{MCP_KEY}__{name}" for name in TOOL_NAMES]
    health = api.get(f"/{down}/health", params=tenant.org, headers=tenant.headers).json()
    assert health["status"] == "unhealthy" and "unreachable" in health["reason"]


def test_a_second_connection_of_one_app_is_told_apart_and_no_prefix_ever_changes(
    api: httpx.Client, mcp_service: ServiceProcess, tenant: Tenant, upstream: McpServer
) -> None:
    first = connect(api, tenant, MCP_KEY, "ada")
    assert gateway(mcp_service, tenant, names) == [f"{MCP_KEY}__{name}" for name in TOOL_NAMES]
    second = connect(api, tenant, MCP_KEY, "grace")
    suffixed = f"{MCP_KEY}_{second[5:11]}"

    # The first keeps its name (an assistant may hold it); the second gets its id's digits.
    listed = gateway(mcp_service, tenant, names)
    assert sorted(listed) == sorted(
        f"{prefix}__{name}" for prefix in (MCP_KEY, suffixed) for name in TOOL_NAMES
    )
    # Once the first is gone the second keeps its suffix, and a new one takes the free name.
    deleted = api.delete(f"/{first}", params=tenant.org, headers=tenant.headers)
    assert deleted.status_code in (200, 204), deleted.text
    third = connect(api, tenant, MCP_KEY, "linus")
    listed = gateway(mcp_service, tenant, names)
    assert sorted(listed) == sorted(
        f"{prefix}__{name}" for prefix in (suffixed, MCP_KEY) for name in TOOL_NAMES
    )
    # The free name is the third connection's: with the second disabled, it alone is offered.
    disable(api, tenant, second)
    assert gateway(mcp_service, tenant, names) == [f"{MCP_KEY}__{name}" for name in TOOL_NAMES]
    assert third != second


def test_a_call_is_forwarded_and_its_result_returned_as_the_server_gave_it(
    api: httpx.Client, mcp_service: ServiceProcess, tenant: Tenant, upstream: McpServer
) -> None:
    connect(api, tenant, MCP_KEY, "ada")

    result: CallToolResult = gateway(
        mcp_service, tenant, call(f"{MCP_KEY}__search_issues", {"query": "bug"})
    )
    failed: CallToolResult = gateway(mcp_service, tenant, call(f"{MCP_KEY}__close_issue"))

    assert result.is_error is False
    assert result.content[0].text == "called search_issues with {'query': 'bug'}"  # type: ignore[union-attr]
    assert failed.is_error is True  # the tool's own failure, unchanged
    assert failed.content[0].text == "the issue is locked"  # type: ignore[union-attr]
    assert upstream.calls["tools/call search_issues"] == 1
    assert upstream.calls["tools/call close_issue"] == 1


def test_calls_share_one_upstream_session_per_connection_and_token(
    api: httpx.Client, mcp_service: ServiceProcess, tenant: Tenant, upstream: McpServer
) -> None:
    connect(api, tenant, MCP_KEY, "ada")
    search = call(f"{MCP_KEY}__search_issues", {"query": "bug"})
    first: CallToolResult = gateway(mcp_service, tenant, search)
    assert first.is_error is False
    upstream.reset()

    second: CallToolResult = gateway(mcp_service, tenant, search)

    assert second.is_error is False
    assert upstream.calls["tools/call search_issues"] == 1
    # The session of the first call, kept: no new handshake, only the call itself.
    assert upstream.calls["request"] == 1


def test_a_session_the_server_forgot_is_replaced_and_the_call_made_once(
    api: httpx.Client, mcp_service: ServiceProcess, tenant: Tenant, upstream: McpServer
) -> None:
    connect(api, tenant, MCP_KEY, "ada")
    search = call(f"{MCP_KEY}__search_issues", {"query": "bug"})
    gateway(mcp_service, tenant, search)
    upstream.forget_sessions()  # the server restarted
    upstream.calls.clear()

    result: CallToolResult = gateway(mcp_service, tenant, search)

    assert result.is_error is False
    assert result.content[0].text == "called search_issues with {'query': 'bug'}"  # type: ignore[union-attr]
    assert upstream.calls["forgotten session POST"] == 1  # the kept session, refused
    assert upstream.calls["tools/call search_issues"] == 1  # then once, in a new session


def test_a_tool_the_caller_may_not_use_is_unknown_and_never_called(
    api: httpx.Client, mcp_service: ServiceProcess, tenant: Tenant, upstream: McpServer
) -> None:
    connection_id = connect(api, tenant, MCP_KEY, "ada")
    allowed = [name for name in TOOL_NAMES if name != "close_issue"]
    response = api.patch(
        f"/{connection_id}/tools",
        params=tenant.org,
        headers=tenant.headers,
        json={"enabled": True, "allowed_tools": allowed},
    )
    assert response.status_code == 200, response.text

    assert gateway(mcp_service, tenant, names) == [f"{MCP_KEY}__{name}" for name in allowed]
    for name in (f"{MCP_KEY}__close_issue", f"{MCP_KEY}__no_such_tool", "close_issue"):
        with pytest.raises(MCPError) as refused:
            gateway(mcp_service, tenant, call(name))
        assert "Unknown tool" in refused.value.message
    assert upstream.calls["tools/call close_issue"] == 0

    # Disabling the connection takes effect on the next request.
    disable(api, tenant, connection_id)
    assert gateway(mcp_service, tenant, names) == []
    with pytest.raises(MCPError):
        gateway(mcp_service, tenant, call(f"{MCP_KEY}__whoami"))
    assert upstream.calls["tools/call whoami"] == 0


def test_a_server_that_refuses_the_call_gives_an_error_result(
    api: httpx.Client, mcp_service: ServiceProcess, tenant: Tenant, upstream: McpServer
) -> None:
    connect(api, tenant, MCP_KEY, "ada")
    gateway(mcp_service, tenant, names)  # listed and cached: the gateway knows the tool
    upstream.refuse_every_token = True

    result: CallToolResult = gateway(mcp_service, tenant, call(f"{MCP_KEY}__whoami"))

    assert result.is_error is True
    assert "refused" in result.content[0].text  # type: ignore[union-attr]
    assert upstream.calls["refused"] == 2  # the token, then once more after a forced refresh


def test_one_connections_endpoint_uses_the_servers_own_names(
    api: httpx.Client, mcp_service: ServiceProcess, tenant: Tenant, upstream: McpServer
) -> None:
    first = connect(api, tenant, MCP_KEY, "ada")
    connect(api, tenant, MCP_KEY, "grace")

    assert gateway(mcp_service, tenant, names, connection_id=first) == TOOL_NAMES
    result: CallToolResult = gateway(mcp_service, tenant, call("ping"), connection_id=first)
    assert result.content[0].text == "called ping with {}"  # type: ignore[union-attr]


def test_a_request_with_more_than_the_callers_parameters_is_answered_alike(
    api: httpx.Client, mcp_service: ServiceProcess, tenant: Tenant, upstream: McpServer
) -> None:
    """Calls that name only the caller take the HTTP layer's shortcut; any other request the
    declared route, with its validation: both answer as the gateway does."""
    mine = connect(api, tenant, MCP_KEY, "ada")
    headers = {"Accept": "application/json, text/event-stream", **tenant.headers}
    answers = {}
    for path, name in ((f"/{mine}/mcp", "ping"), ("/mcp", f"{MCP_KEY}__ping")):
        for extra in ({}, {"trace": "1"}):
            sent = {
                "jsonrpc": "2.0",
                "id": 7,
                "method": "tools/call",
                "params": {"name": name, "arguments": {}},
            }
            response = api.post(path, params={**tenant.org, **extra}, headers=headers, json=sent)
            assert response.status_code == 200, response.text
            answers[path, bool(extra)] = response.json()["result"]["content"][0]["text"]
    assert set(answers.values()) == {"called ping with {}"}, answers

    too_long = "conn_" + "0" * 300
    listing = {"jsonrpc": "2.0", "id": 8, "method": "tools/list"}
    response = api.post(f"/{too_long}/mcp", params=tenant.org, headers=headers, json=listing)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "VALIDATION_ERROR"


def test_an_api_key_connections_tools_are_called_with_its_key(
    api: httpx.Client, mcp_service: ServiceProcess, tenant: Tenant, upstream: McpServer
) -> None:
    """A connection whose credentials are fields of its row (SPEC §10) is called with them, as
    its entry's ``api_auth`` says, through both endpoints."""
    keyed = keyed_connection(api, tenant, upstream)

    alone: CallToolResult = gateway(mcp_service, tenant, call("ping"), connection_id=keyed)
    together: CallToolResult = gateway(mcp_service, tenant, call(f"{KEYED_KEY}__ping"))

    for result in (alone, together):
        assert not result.is_error, result
        assert result.content[0].text == "called ping with {}"  # type: ignore[union-attr]
    assert upstream.calls["api key"] >= 2 and upstream.calls["refused"] == 0


def test_refusals_before_mcp_starts_keep_the_error_envelope(
    api: httpx.Client,
    mcp_service: ServiceProcess,
    tenant: Tenant,
    other_tenant: Tenant,
    upstream: McpServer,
) -> None:
    mine = connect(api, tenant, MCP_KEY, "ada")
    plain = connect(api, tenant, PLAIN_KEY, "ada")
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    headers = {"Accept": "application/json, text/event-stream"}

    cases = [
        ("/mcp", tenant.org, headers, 401, "AUTHENTICATION_REQUIRED"),
        (
            f"/{mine}/mcp",
            other_tenant.org,
            {**headers, **other_tenant.headers},
            404,
            "RESOURCE_NOT_FOUND",
        ),
        (f"/{plain}/mcp", tenant.org, {**headers, **tenant.headers}, 400, "VALIDATION_ERROR"),
        # A user key names its organization (as on the token route), end user or not.
        ("/mcp", {"end_user_id": "x"}, {**headers, **tenant.headers}, 400, "VALIDATION_ERROR"),
    ]
    # Alone, the caller's parameters take the HTTP layer's shortcut; with another, the declared
    # route: both refuse alike.
    for extra in ({}, {"trace": "1"}):
        for path, params, sent, status, code in cases:
            response = api.post(path, params={**params, **extra}, headers=sent, json=body)
            assert response.status_code == status, (extra, response.text)
            assert response.json()["error"]["code"] == code

    # Stateless: no server stream to GET, no session to DELETE (405, as Streamable HTTP says).
    for method in ("GET", "DELETE"):
        answer = api.request(
            method, "/mcp", params=tenant.org, headers={**headers, **tenant.headers}, timeout=10
        )
        assert answer.status_code == 405, answer.text
        assert answer.json()["error"]["code"] == "METHOD_NOT_ALLOWED"

    # A service key acts for the end user it names, and sees only that end user's connections.
    end_users = make_organization_key(mcp_service, tenant.organization_id)
    alice = end_users.acting_for("alice@platform")
    connect(api, alice, MCP_KEY, "alice")
    assert gateway(mcp_service, alice, names) == [f"{MCP_KEY}__{name}" for name in TOOL_NAMES]
    assert gateway(mcp_service, end_users.acting_for("bob"), names) == []
    response = api.post(
        f"/{mine}/mcp", params=alice.org, headers={**headers, **alice.headers}, json=body
    )
    assert response.status_code == 404, response.text


def test_a_pct_token_reaches_its_end_users_tools_through_the_gateway(
    api: httpx.Client, tenant: Tenant, mcp_service: ServiceProcess
) -> None:
    """SPEC §8: a token-exchange ``pct_`` token is accepted on the MCP routes (its messages are
    POSTs), for its own end user only; it still changes nothing elsewhere."""
    platform = make_organization_key(mcp_service, tenant.organization_id)
    carol = platform.acting_for("carol")
    connect(api, carol, MCP_KEY, "carol")

    async def minted(session, runtime):  # type: ignore[no-untyped-def]
        token, _ = pct.mint(runtime.sealer, tenant.organization_id, "carol", platform.api_key_id)
        outputs.RECORD.add_secret(token, "pct")
        return token

    token = mcp_service.run_db(minted)
    bearer = Tenant(tenant.organization_id, "", token, "")
    assert gateway(mcp_service, bearer, names) == [f"{MCP_KEY}__{name}" for name in TOOL_NAMES]
    refused = api.post(
        "/authorize",
        params=bearer.org,
        headers=bearer.headers,
        json={"connector_type": MCP_KEY},
    )
    assert refused.status_code == 403, refused.text


def test_what_a_call_sends_upstream_never_reaches_the_services_log(
    api: httpx.Client, mcp_service: ServiceProcess, tenant: Tenant, upstream: McpServer
) -> None:
    """The MCP SDK's client logs each request's URL (INFO) and each message (DEBUG): a tool's
    arguments and results are the user's data, and a server URL may carry a key."""
    connect(api, tenant, MCP_KEY, "ada")
    needle = f"needle-{uuid.uuid4().hex}"

    result: CallToolResult = gateway(
        mcp_service, tenant, call(f"{MCP_KEY}__search_issues", {"query": needle})
    )

    assert result.is_error is False and needle in result.content[0].text  # type: ignore[union-attr]
    log = mcp_service.log_path.read_text()
    assert needle not in log
    assert "HTTP Request:" not in log
