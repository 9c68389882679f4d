"""The MCP gateway's routes (SPEC §11): authenticated here, then handed to the SDK's manager.

The caller is authorized as on ``POST /{id}/token`` (an API key, a service key with
``end_user_id``, or a ``pct_`` token for its end user), by the same function: key, membership
or end user, and for ``/{id}/mcp`` the connection, in one statement. The gateway's calls are
plain POSTs like the token route's, so each path also has the HTTP layer's shortcut
(``http.direct``), which runs that function without solving dependencies per call; a request it
does not take (a query parameter that is not the caller's, an over-long id) goes to the
declared route. Both are on the application's own router ahead of the included ones.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, FastAPI, Path, Request, Response
from starlette.types import Receive, Scope, Send

from personal_connectors.config import API_PREFIX
from personal_connectors.exceptions import MethodNotAllowed
from personal_connectors.http.dependencies import CALLER_QUERY, RuntimeDep, get_runtime
from personal_connectors.http.direct import add_direct_route
from personal_connectors.mcp_servers.calls import GatewayCall
from personal_connectors.mcp_servers.exceptions import NoMcpServer
from personal_connectors.mcp_servers.lifecycle import GatewayHolder
from personal_connectors.mcp_servers.service import server_url
from personal_connectors.models import ID_MAX_LENGTH
from personal_connectors.runtime import Runtime
from personal_connectors.tokens.endpoints import authorized, token_request
from personal_connectors.tokens.exceptions import ConnectionNotFound
from personal_connectors.tokens.service import TokenRequest, TokenService

if TYPE_CHECKING:
    from personal_connectors.mcp_servers.gateway import McpGateway

router = APIRouter(tags=["MCP gateway"])

GATEWAY_PATH = f"{API_PREFIX}/mcp"
CONNECTION_GATEWAY_PATH = f"{API_PREFIX}/{{connection_id}}/mcp"
ConnectionId = Annotated[str, Path(min_length=1, max_length=ID_MAX_LENGTH)]
# POST only: the JSON-RPC messages. The gateway is stateless, with no server stream to GET and
# no session to DELETE, which Streamable HTTP says to answer 405 (here in the envelope, before
# MCP starts). The routes stay out of the OpenAPI document: once authenticated, every answer is
# the MCP transport's (JSON-RPC, its own statuses), which that document cannot describe;
# docs/guide.md "MCP servers" does.
METHOD = "POST"
STATELESS = "The MCP gateway is stateless: POST JSON-RPC messages; there is no stream or session."


class _HandOff(Response):
    """The response that lets the SDK's session manager answer the request itself."""

    def __init__(self, gateway: McpGateway, call: GatewayCall) -> None:
        super().__init__()
        self._gateway = gateway
        self._call = call

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._gateway.handle(scope, receive, send, self._call)


async def _gateway(request: Request) -> McpGateway:
    holder: GatewayHolder = request.app.state.mcp_gateway
    return await holder.gateway()


@router.api_route("/mcp", methods=["GET", "DELETE"], include_in_schema=False)
async def mcp_gateway_no_stream() -> Response:
    """Here, not at ``/{connection_id}``: the literal path wins for every method (SPEC §2)."""
    raise MethodNotAllowed(STATELESS, headers={"Allow": METHOD})


async def mcp_gateway(
    request: Request,
    caller: Annotated[TokenRequest, Depends(token_request)],
    runtime: RuntimeDep,
) -> Response:
    """The tools of all the caller's connections that have an MCP server."""
    return _HandOff(await _gateway(request), GatewayCall(runtime, caller.access))


async def connection_mcp_gateway(
    # Declared for validation; token_request has already used it.
    connection_id: ConnectionId,
    request: Request,
    caller: Annotated[TokenRequest, Depends(token_request)],
    runtime: RuntimeDep,
) -> Response:
    """One connection's MCP server through the service, under the server's own tool names."""
    return await _one_connection(request, runtime, caller)


async def _one_connection(request: Request, runtime: Runtime, caller: TokenRequest) -> Response:
    connection = caller.connection
    if connection is None:
        raise ConnectionNotFound()
    if server_url(runtime, connection) is None:
        raise NoMcpServer(connection.app_key)
    call = GatewayCall(runtime, caller.access, connection)
    return _HandOff(await _gateway(request), call)


async def plain_gateway_request(request: Request) -> Response | None:
    """The shortcut's answer to either path: the declared route's work without its dependency
    solving (the caller authorized by the same function); None for a request the declared
    route must take."""
    query = dict(parse_qsl(request.scope["query_string"].decode("latin-1"), keep_blank_values=True))
    connection_id = request.path_params.get("connection_id")
    if not CALLER_QUERY.issuperset(query) or (
        connection_id is not None and len(connection_id) > ID_MAX_LENGTH
    ):
        return None
    organization_id = query.get("organization_id") or query.get("organizationId")
    runtime = await get_runtime(request)
    caller = await authorized(
        TokenService(None, runtime), request, organization_id, query.get("end_user_id")
    )
    if connection_id is None:
        return _HandOff(await _gateway(request), GatewayCall(runtime, caller.access))
    return await _one_connection(request, runtime, caller)


def add_gateway_routes(app: FastAPI) -> None:
    """The gateway's POST routes, each with its shortcut (on the application's own router, as
    the token route: no other path is ``/mcp`` or two segments ending in ``/mcp``)."""
    for path, endpoint, summary in (
        (GATEWAY_PATH, mcp_gateway, "The MCP gateway"),
        (CONNECTION_GATEWAY_PATH, connection_mcp_gateway, "One connection's MCP gateway"),
    ):
        add_direct_route(
            app,
            path,
            METHOD,
            plain_gateway_request,
            endpoint=endpoint,
            summary=summary,
            include_in_schema=False,
            tags=["MCP gateway"],
        )
