"""Errors of the MCP routes (SPEC §2, §11), each with a message that says what to do."""

from __future__ import annotations

from personal_connectors.exceptions import (
    APIError,
    ProviderError,
    ProviderUnavailable,
    ValidationFailed,
)


class NoMcpServer(ValidationFailed):
    def __init__(self, app_key: str) -> None:
        super().__init__(
            f"The connection's connector ({app_key}) declares no MCP server, so it has no "
            "tools; only connections whose catalog entry has `mcp.url` do.",
            message="This connection has no MCP server.",
            details={"app_key": app_key},
        )


class NoTokenForMcp(ValidationFailed):
    def __init__(self) -> None:
        super().__init__(
            "The connection lacks a value the entry's api_auth sends to its MCP server "
            "(an access token, or a credentials field).",
            message="This connection cannot reach its MCP server.",
        )


class McpServerUnavailable(ProviderUnavailable):
    message = "The connection's MCP server is not reachable right now. Please try again shortly."

    def __init__(self, system_message: str) -> None:
        super().__init__(system_message, headers={"Retry-After": "5"})


class McpServerTimeout(APIError):
    status, code, type = 504, "PROVIDER_TIMEOUT", "server_error"
    message = "The connection's MCP server took too long to answer."


class McpServerError(ProviderError):
    message = "The connection's MCP server answered unexpectedly."
