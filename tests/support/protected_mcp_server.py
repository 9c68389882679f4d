"""MCP servers that users name themselves (``custom_mcp``, SPEC §11), for tests: the official
SDK's low-level ``Server`` over Streamable HTTP, under uvicorn on a loopback port, in a thread.

A protected one is a resource server of the tests' real OpenID provider (started with dynamic
registration and resource indicators): the SDK serves its protected resource metadata
(RFC 9728) and answers 401 with ``resource_metadata`` in ``WWW-Authenticate``; every bearer
token must be a JWT signed by the provider's published keys, from that issuer, whose audience
is this server's own URL (RFC 8707), so a token meant for another server is refused. It can be
made to lie (``advertised_resource``, ``advertised_issuer``) for the tests of what the service
refuses. An open one needs no token at all. Each counts what it was asked.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from joserfc.jwt import JWTClaimsRegistry
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from mcp.server.lowlevel import Server
from mcp.types import (
    CallToolRequestParams,
    CallToolResult,
    ListToolsResult,
    PaginatedRequestParams,
    TextContent,
    Tool,
)

from tests.support import web
from tests.support.loopback import ThreadedUvicorn
from tests.support.oidc import OidcProvider, free_port

START_TIMEOUT_S = 10.0
TOOLS = [
    Tool(
        name="whoami",
        description="The token's subject and audience.",
        input_schema={"type": "object"},
    ),
    Tool(
        name="echo",
        description="Says its text back.",
        input_schema={"type": "object", "properties": {"text": {"type": "string"}}},
    ),
]


class JwtVerifier:
    """The SDK's ``TokenVerifier``: a JWT access token for this server, or nothing."""

    def __init__(self, owner: ProtectedMcpServer, oidc: OidcProvider) -> None:
        self._owner = owner
        self._issuer = oidc.issuer
        self._keys = KeySet.import_key_set(web.get(oidc.metadata["jwks_uri"], timeout=10).json())

    async def verify_token(self, token: str) -> AccessToken | None:
        if token in self._owner.refused_tokens:
            self._owner.count("refused")
            return None
        try:
            claims = jwt.decode(token, self._keys, algorithms=["RS256"]).claims
            JWTClaimsRegistry(
                iss={"essential": True, "value": self._issuer},
                aud={"essential": True, "value": self._owner.url},
                exp={"essential": True},
            ).validate(claims)
        except (JoseError, ValueError):
            self._owner.count("refused")
            return None
        return AccessToken(
            token=token,
            client_id=str(claims.get("client_id", "")),
            scopes=str(claims.get("scope", "")).split(),
            expires_at=claims.get("exp"),
            resource=self._owner.url,
            subject=claims.get("sub"),
        )


class ProtectedMcpServer:
    def __init__(
        self,
        name: str,
        oidc: OidcProvider | None,
        *,
        advertised_resource: str | None = None,
        advertised_issuer: str | None = None,
    ) -> None:
        """``oidc`` None: an open server. ``advertised_*``: what its metadata claims instead of
        the truth (another resource's path on this server; another issuer)."""
        self.calls: Counter[str] = Counter()
        self.refused_tokens: set[str] = set()
        self._lock = threading.Lock()
        server: Server[Any] = Server(
            name, version="1.0.0", on_list_tools=self._list_tools, on_call_tool=self._call_tool
        )
        self.port = free_port()
        auth: dict[str, Any] = {}
        if oidc is not None:
            resource = (
                f"http://127.0.0.1:{self.port}{advertised_resource}"
                if advertised_resource
                else self.url
            )
            auth = {
                "token_verifier": JwtVerifier(self, oidc),
                "auth": AuthSettings(
                    issuer_url=advertised_issuer or oidc.issuer,  # type: ignore[arg-type]
                    resource_server_url=resource,  # type: ignore[arg-type]
                    validate_token_resource=False,  # (JwtVerifier checks the audience)
                ),
            }
        app = server.streamable_http_app(**auth)
        self._server = ThreadedUvicorn(app, port=self.port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def start(self) -> ProtectedMcpServer:
        self._server.start(START_TIMEOUT_S)
        return self

    def stop(self) -> None:
        self._server.stop()

    def count(self, what: str) -> None:
        with self._lock:
            self.calls[what] += 1

    async def _list_tools(self, ctx: Any, params: PaginatedRequestParams | None) -> ListToolsResult:
        self.count("tools/list")
        return ListToolsResult(tools=TOOLS)

    async def _call_tool(self, ctx: Any, params: CallToolRequestParams) -> CallToolResult:
        self.count(f"tools/call {params.name}")
        if params.name == "whoami":
            token = get_access_token()
            said = f"{token.subject} at {token.resource}" if token else "anonymous"
            return CallToolResult(content=[TextContent(text=said)])
        text = (params.arguments or {}).get("text", "")
        return CallToolResult(content=[TextContent(text=str(text))])
