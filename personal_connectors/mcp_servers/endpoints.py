"""The MCP gateway's routes (SPEC §11): authenticated here, then handed to the SDK's manager.

``/mcp`` is literal and the application includes this router before the connection routes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, Path, Request, Response
from starlette.types import Receive, Scope, Send

from personal_connectors.exceptions import MethodNotAllowed
from personal_connectors.http.dependencies import OrgAccessDep, RuntimeDep, SessionDep
from personal_connectors.mcp_servers.calls import GatewayCall
from personal_connectors.mcp_servers.exceptions import NoMcpServer
from personal_connectors.mcp_servers.lifecycle import GatewayHolder
from personal_connectors.mcp_servers.repository import McpRepository
from personal_connectors.mcp_servers.service import server_url
from personal_connectors.models import ID_MAX_LENGTH
from personal_connectors.tokens.exceptions import ConnectionNotFound

if TYPE_CHECKING:
    from personal_connectors.mcp_servers.gateway import McpGateway

router = APIRouter(tags=["MCP gateway"])

ConnectionId = Annotated[str, Path(min_length=1, max_length=ID_MAX_LENGTH)]
# POST only: the JSON-RPC messages. The gateway is stateless, with no server stream to GET and
# no session to DELETE, which Streamable HTTP says to answer 405 (here in the envelope, before
# MCP starts). The routes stay out of the OpenAPI document: once authenticated, every answer is
# the MCP transport's (JSON-RPC, its own statuses), which that document cannot describe;
# docs/guide.md "MCP servers" does.
METHODS = ["POST"]
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
    raise MethodNotAllowed(STATELESS, headers={"Allow": "POST"})


@router.api_route("/mcp", methods=METHODS, include_in_schema=False)
async def mcp_gateway(request: Request, access: OrgAccessDep, runtime: RuntimeDep) -> Response:
    """The tools of all the caller's connections that have an MCP server."""
    return _HandOff(await _gateway(request), GatewayCall(runtime, access))


@router.api_route("/{connection_id}/mcp", methods=METHODS, include_in_schema=False)
async def connection_mcp_gateway(
    connection_id: ConnectionId,
    request: Request,
    access: OrgAccessDep,
    runtime: RuntimeDep,
    session: SessionDep,
) -> Response:
    """One connection's MCP server through the service, under the server's own tool names."""
    connection = await McpRepository(session).owned(
        connection_id, access.user_id, access.organization_id
    )
    if connection is None:
        raise ConnectionNotFound()
    if server_url(runtime, connection) is None:
        raise NoMcpServer(connection.app_key)
    return _HandOff(
        await _gateway(request), GatewayCall(runtime, access, connection.id, connection)
    )
