"""A real MCP server for tests: the official SDK's low-level ``Server`` over Streamable HTTP,
under uvicorn on a loopback port, in a thread of the test process.

It is a resource server of the tests' real OpenID provider: every request's bearer token is
checked by that provider's token introspection (RFC 7662), so a token the provider revoked is
refused with HTTP 401 as a production MCP server would. Its ``tools/list`` answers in pages of
``page_size``; it counts what it was asked so a test can tell a cached answer from a new one.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from mcp.server.lowlevel import Server
from mcp.types import (
    INVALID_REQUEST,
    CallToolRequestParams,
    CallToolResult,
    ErrorData,
    JSONRPCError,
    ListToolsResult,
    PaginatedRequestParams,
    TextContent,
    Tool,
    ToolAnnotations,
)
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from tests.support import web
from tests.support.loopback import ThreadedUvicorn
from tests.support.oidc import OidcProvider, free_port

SERVER_NAME = "test-mcp"
SERVER_VERSION = "3.1.4"
START_TIMEOUT_S = 10.0

TOOLS = [
    Tool(
        name="search_issues",
        description="Search the account's issues.",
        input_schema={
            "type": "object",
            "properties": {"query": {"type": "string"}},
            "required": ["query"],
        },
        annotations=ToolAnnotations(read_only_hint=True),
    ),
    Tool(
        name="create_issue",
        description="Create an issue.",
        input_schema={"type": "object", "properties": {"title": {"type": "string"}}},
        output_schema={"type": "object", "properties": {"id": {"type": "string"}}},
    ),
    Tool(name="close_issue", description="Close an issue.", input_schema={"type": "object"}),
    Tool(name="whoami", description="Who the token belongs to.", input_schema={"type": "object"}),
    Tool(name="ping", input_schema={"type": "object"}),
]


class IntrospectingVerifier:
    """Asks the OpenID provider about each token (the MCP SDK's ``TokenVerifier``)."""

    def __init__(self, oidc: OidcProvider, client_id: str, client_secret: str, owner: McpServer):
        self._url = oidc.metadata["introspection_endpoint"]
        self._auth = (client_id, client_secret)
        self._owner = owner

    async def verify_token(self, token: str) -> AccessToken | None:
        self._owner.count("request")  # every HTTP request to the server carries a token
        if self._owner.refuse_every_token or token in self._owner.refused_tokens:
            self._owner.count("refused")
            return None
        if token in self._owner.api_keys:  # a key the test handed out, as for an API-key server
            self._owner.count("api key")
            return AccessToken(token=token, client_id="api-key", scopes=[])
        async with web.async_client(timeout=10) as client:
            answer = await client.post(self._url, data={"token": token}, auth=self._auth)
        claims = answer.json() if answer.status_code == 200 else {}
        if not claims.get("active"):
            self._owner.count("refused")
            return None
        return AccessToken(
            token=token,
            client_id=str(claims.get("client_id", "")),
            scopes=str(claims.get("scope", "")).split(),
            expires_at=claims.get("exp"),
            subject=claims.get("sub"),
        )


class McpServer:
    def __init__(
        self, oidc: OidcProvider, client_id: str, client_secret: str, *, page_size: int = 2
    ) -> None:
        self.page_size = page_size
        self.calls: Counter[str] = Counter()
        # Tokens this server refuses although the provider still vouches for them (as a server
        # that revoked them on its side would): revoking an access token at oidc-provider
        # revokes its whole grant, refresh token included.
        self.refused_tokens: set[str] = set()
        self.refuse_every_token = False
        self.api_keys: set[str] = set()
        # Session ids the server was asked about, and those it answers 404 for (as it would
        # after a restart: ``forget_sessions``).
        self._sessions_seen: set[bytes] = set()
        self._forgotten: set[bytes] = set()
        self._lock = threading.Lock()
        server: Server[Any] = Server(
            SERVER_NAME,
            version=SERVER_VERSION,
            on_list_tools=self._list_tools,
            on_call_tool=self._call_tool,
        )
        self.port = free_port()
        app = server.streamable_http_app(
            token_verifier=IntrospectingVerifier(oidc, client_id, client_secret, self),
            auth=AuthSettings(
                issuer_url=oidc.issuer,  # type: ignore[arg-type]
                resource_server_url=self.url,  # type: ignore[arg-type]
                # The provider issues opaque tokens without an audience: introspection decides.
                validate_token_resource=False,
            ),
        )
        self._server = ThreadedUvicorn(self._forgetting(app), port=self.port)

    def _forgetting(self, app: ASGIApp) -> ASGIApp:
        """``app``, answering a forgotten session 404 as the SDK answers one it does not know."""

        async def forgetting(scope: Scope, receive: Receive, send: Send) -> None:
            session = dict(scope.get("headers", [])).get(b"mcp-session-id")
            if scope["type"] == "http" and session is not None:
                if session in self._forgotten:
                    self.count(f"forgotten session {scope['method']}")
                    error = ErrorData(code=INVALID_REQUEST, message="Session not found")
                    body = JSONRPCError(jsonrpc="2.0", id=None, error=error)
                    answer = Response(
                        body.model_dump_json(by_alias=True, exclude_unset=True),
                        status_code=404,
                        media_type="application/json",
                    )
                    await answer(scope, receive, send)
                    return
                self._sessions_seen.add(session)
            await app(scope, receive, send)

        return forgetting

    def forget_sessions(self) -> None:
        """Every session so far is unknown from now on, as after a restart."""
        self._forgotten |= self._sessions_seen

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def start(self) -> McpServer:
        self._server.start(START_TIMEOUT_S)
        return self

    def stop(self) -> None:
        self._server.stop()

    def count(self, what: str) -> None:
        with self._lock:
            self.calls[what] += 1

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()
        self.refused_tokens.clear()
        self.refuse_every_token = False
        self.api_keys.clear()
        self._forgotten.clear()

    async def _list_tools(self, ctx: Any, params: PaginatedRequestParams | None) -> ListToolsResult:
        cursor = params.cursor if params is not None else None
        start = int(cursor) if cursor else 0
        self.count("tools/list" if cursor is None else "tools/list page")
        end = start + self.page_size
        return ListToolsResult(
            tools=TOOLS[start:end], next_cursor=str(end) if end < len(TOOLS) else None
        )

    async def _call_tool(self, ctx: Any, params: CallToolRequestParams) -> CallToolResult:
        self.count(f"tools/call {params.name}")
        if params.name == "close_issue":  # a tool's own failure: the result says so
            return CallToolResult(content=[TextContent(text="the issue is locked")], is_error=True)
        return CallToolResult(
            content=[TextContent(text=f"called {params.name} with {params.arguments or {}}")]
        )
