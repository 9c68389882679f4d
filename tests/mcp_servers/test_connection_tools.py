"""A connection's MCP server (SPEC §11): ``GET /{id}/tools`` over every page, cached per
connection and dropped when the connection changes, the ``PATCH /{id}/tools`` settings,
one forced refresh on a refused token, and ``POST /{id}/test`` with the server's details —
against a real MCP server that accepts the real OpenID provider's tokens."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import Tenant
from tests.flows.conftest import authorize_and_consent, follow_callback
from tests.mcp_servers.conftest import DOWN_KEY, MCP_KEY, PLAIN_KEY, keyed_connection
from tests.support import web
from tests.support.mcp_server import SERVER_VERSION, TOOLS, McpServer
from tests.support.platform import make_organization_key
from tests.support.service import ServiceProcess

TOOL_NAMES = [tool.name for tool in TOOLS]


def connect(api: httpx.Client, caller: Tenant, connector_type: str = MCP_KEY) -> str:
    flow = authorize_and_consent(api, caller, login="mcp-user", connector_type=connector_type)
    response = follow_callback(flow.callback_url)
    assert response.status_code == 200, response.text
    return str(response.json()["data"]["connection_id"])


def tools(api: httpx.Client, caller: Tenant, connection_id: str, **query: str) -> httpx.Response:
    return api.get(
        f"/{connection_id}/tools", params={**caller.org, **query}, headers=caller.headers
    )


def listed(api: httpx.Client, caller: Tenant, connection_id: str, **query: str) -> list[dict]:
    response = tools(api, caller, connection_id, **query)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "list"
    return list(body["data"])


def configure(api: httpx.Client, caller: Tenant, connection_id: str, **body: object) -> None:
    response = api.patch(
        f"/{connection_id}/tools", params=caller.org, headers=caller.headers, json=body
    )
    assert response.status_code == 200, response.text


def access_token(api: httpx.Client, caller: Tenant, connection_id: str) -> str:
    response = api.post(f"/{connection_id}/token", params=caller.org, headers=caller.headers)
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def test_every_page_of_the_servers_tools_is_listed_as_the_server_gave_it(
    api: httpx.Client, tenant: Tenant, upstream: McpServer
) -> None:
    connection_id = connect(api, tenant)

    data = listed(api, tenant, connection_id)

    assert [tool["name"] for tool in data] == TOOL_NAMES  # 5 tools in pages of 2
    assert upstream.calls["tools/list"] == 1 and upstream.calls["tools/list page"] == 2
    by_name = {tool["name"]: tool for tool in data}
    assert by_name["search_issues"] == {
        "name": "search_issues",
        "description": "Search the account's issues.",
        "inputSchema": TOOLS[0].input_schema,
        "annotations": {"readOnlyHint": True},
        "enabled": True,
    }
    assert by_name["create_issue"]["outputSchema"] == TOOLS[1].output_schema
    assert "outputSchema" not in by_name["close_issue"] and "annotations" not in by_name["ping"]
    assert by_name["ping"]["description"] is None
    assert all(tool["enabled"] for tool in data)


def test_the_list_is_cached_until_forceRefresh(
    api: httpx.Client, tenant: Tenant, upstream: McpServer
) -> None:
    connection_id = connect(api, tenant)
    first = listed(api, tenant, connection_id)
    assert listed(api, tenant, connection_id) == first
    assert upstream.calls["tools/list"] == 1

    assert listed(api, tenant, connection_id, forceRefresh="true") == first
    assert upstream.calls["tools/list"] == 2
    assert listed(api, tenant, connection_id) == first
    assert upstream.calls["tools/list"] == 2


def test_patch_tools_decides_which_tools_are_enabled_and_drops_the_cache(
    api: httpx.Client, tenant: Tenant, upstream: McpServer
) -> None:
    connection_id = connect(api, tenant)
    listed(api, tenant, connection_id)

    allowed = [name for name in TOOL_NAMES if name != "close_issue"]
    configure(api, tenant, connection_id, enabled=True, allowed_tools=allowed)
    data = listed(api, tenant, connection_id)
    assert {tool["name"]: tool["enabled"] for tool in data} == {
        name: name != "close_issue" for name in TOOL_NAMES
    }
    assert upstream.calls["tools/list"] == 2  # the PATCH dropped the cached list

    configure(api, tenant, connection_id, enabled=False, allowed_tools=None)
    assert not any(tool["enabled"] for tool in listed(api, tenant, connection_id))
    configure(api, tenant, connection_id, enabled=True)
    assert all(tool["enabled"] for tool in listed(api, tenant, connection_id))


def test_disabling_the_connection_stops_its_tools_and_enabling_lists_them_anew(
    api: httpx.Client, tenant: Tenant, upstream: McpServer
) -> None:
    connection_id = connect(api, tenant)
    listed(api, tenant, connection_id)

    def set_active(value: bool) -> None:
        response = api.patch(
            f"/connections/{connection_id}/active",
            params=tenant.org,
            headers=tenant.headers,
            json={"is_active": value},
        )
        assert response.status_code == 200, response.text

    set_active(False)
    refused = tools(api, tenant, connection_id)
    assert refused.status_code == 409, refused.text
    set_active(True)
    listed(api, tenant, connection_id)
    assert upstream.calls["tools/list"] == 2


def test_a_token_the_server_refuses_is_refreshed_once_and_the_list_retried(
    api: httpx.Client, tenant: Tenant, upstream: McpServer
) -> None:
    connection_id = connect(api, tenant)
    before = access_token(api, tenant, connection_id)
    upstream.refused_tokens.add(before)

    data = listed(api, tenant, connection_id, forceRefresh="true")

    assert [tool["name"] for tool in data] == TOOL_NAMES
    assert upstream.calls["refused"] == 1  # the revoked token, once; then the new one worked
    assert upstream.calls["tools/list"] == 1
    assert access_token(api, tenant, connection_id) != before


def test_a_token_refused_again_after_the_refresh_is_a_provider_error(
    api: httpx.Client, tenant: Tenant, upstream: McpServer
) -> None:
    connection_id = connect(api, tenant)
    before = access_token(api, tenant, connection_id)
    upstream.refuse_every_token = True

    response = tools(api, tenant, connection_id)

    assert response.status_code == 502, response.text
    assert response.json()["error"]["code"] == "PROVIDER_ERROR"
    assert "refused" in response.json()["error"]["system_message"]
    assert upstream.calls["refused"] == 2  # the token, then the refreshed one: no third try
    assert access_token(api, tenant, connection_id) != before


def test_the_test_route_answers_the_mcp_servers_health(
    api: httpx.Client, tenant: Tenant, upstream: McpServer
) -> None:
    connection_id = connect(api, tenant)

    response = api.post(f"/{connection_id}/test", params=tenant.org, headers=tenant.headers)

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "healthy" and body["success"] is True
    assert body["action_tested"] == "mcp_list_tools"
    details = body["details"]
    assert details["serverUrl"] == upstream.url
    assert details["serverType"] == "http"
    assert details["serverVersion"] == SERVER_VERSION
    assert details["availableTools"] == len(TOOLS)
    assert isinstance(details["responseTimeMs"], int) and details["responseTimeMs"] >= 0
    # The test listed the tools: the next list comes from the cache.
    listed(api, tenant, connection_id)
    assert upstream.calls["tools/list"] == 1
    health = api.get(f"/{connection_id}/health", params=tenant.org, headers=tenant.headers)
    assert health.json()["status"] == "healthy"


def test_a_server_that_is_down_is_unhealthy_and_its_tools_unavailable(
    api: httpx.Client, tenant: Tenant
) -> None:
    connection_id = connect(api, tenant, DOWN_KEY)

    response = api.post(f"/{connection_id}/test", params=tenant.org, headers=tenant.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "unhealthy" and body["success"] is False
    assert "unreachable" in body["message"]
    assert body["details"]["serverVersion"] is None and body["details"]["availableTools"] is None
    health = api.get(f"/{connection_id}/health", params=tenant.org, headers=tenant.headers)
    assert health.json()["status"] == "unhealthy"

    down = tools(api, tenant, connection_id)
    assert down.status_code == 503, down.text
    assert down.json()["error"]["code"] == "PROVIDER_UNAVAILABLE"
    assert down.headers["Retry-After"]


def test_a_connection_without_an_mcp_server_has_no_tools(api: httpx.Client, tenant: Tenant) -> None:
    connection_id = connect(api, tenant, PLAIN_KEY)

    response = tools(api, tenant, connection_id)

    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert "MCP server" in error["message"] and "mcp.url" in error["system_message"]
    checked = api.post(f"/{connection_id}/test", params=tenant.org, headers=tenant.headers)
    assert checked.status_code == 200
    assert "details" not in checked.json() and "status" not in checked.json()


@pytest.mark.parametrize("route", ["tools", "test"])
def test_another_callers_connection_is_not_found(
    api: httpx.Client,
    mcp_service: ServiceProcess,
    tenant: Tenant,
    other_tenant: Tenant,
    upstream: McpServer,
    route: str,
) -> None:
    connection_id = connect(api, tenant)
    end_users = make_organization_key(mcp_service, tenant.organization_id)
    alice = end_users.acting_for("alice@platform")
    alices = connect(api, alice)
    assert tools(api, alice, alices).status_code == 200

    for caller, foreign in (
        (other_tenant, connection_id),
        (alice, connection_id),
        (
            end_users.acting_for("bob"),
            alices,
        ),
    ):
        if route == "tools":
            response = tools(api, caller, foreign, forceRefresh="true")
        else:
            response = api.post(f"/{foreign}/test", params=caller.org, headers=caller.headers)
        assert response.status_code == 404, response.text
        assert response.json()["error"]["code"] == "RESOURCE_NOT_FOUND"
    assert upstream.calls["tools/list"] == 1  # only alice's own list reached the server


def test_an_api_key_connection_reaches_its_server_with_the_key_as_api_auth_says(
    api: httpx.Client, tenant: Tenant, upstream: McpServer
) -> None:
    data = listed(api, tenant, keyed_connection(api, tenant, upstream))

    assert [tool["name"] for tool in data] == TOOL_NAMES
    assert upstream.calls["api key"] >= 1 and upstream.calls["refused"] == 0


def test_each_session_with_an_mcp_server_is_counted_on_metrics(
    api: httpx.Client, tenant: Tenant, mcp_service: ServiceProcess
) -> None:
    """SPEC §12: MCP calls by provider and outcome on ``/metrics``."""

    def calls() -> float:
        text = web.get(f"http://127.0.0.1:{mcp_service.port}/metrics", timeout=10).text
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("connectors_mcp_calls_total{")
            and f'provider="{MCP_KEY}"' in line
            and 'status="ok"' in line
        )

    connection_id = connect(api, tenant)
    before = calls()
    listed(api, tenant, connection_id, forceRefresh="true")
    assert calls() == before + 1
