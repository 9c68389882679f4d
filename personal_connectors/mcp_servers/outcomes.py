"""What a session with an MCP server ends in: the work's records and the failures, apart from
the SDK (``client``) so that modules naming them do not import it: the SDK is imported when an
MCP server is first used, not at start-up."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mcp import ClientSession
    from mcp.types import ErrorData


class ServerFailure(Exception):
    """The MCP server could not be used; the message is safe to show (no token, no body)."""


class TokenRefused(ServerFailure):
    """The server answered HTTP 401 to the connection's token (or to none: ``challenge`` is
    its ``WWW-Authenticate``, where an RFC 9728 server names its metadata)."""

    def __init__(self, message: str, challenge: str | None = None) -> None:
        super().__init__(message)
        self.challenge = challenge


class ServerUnreachable(ServerFailure):
    """No answer: the connection failed, was refused by the outbound guard, or broke."""


class ServerNotAllowed(ServerUnreachable):
    """The outbound guard refused the server's address (not https, or an internal one)."""


class ServerTimedOut(ServerFailure):
    """A read from the server ran past its limit."""


class ServerAnsweredError(ServerFailure):
    """The server answered, with a JSON-RPC error (``error``) or something that is not MCP."""

    def __init__(self, message: str, error: ErrorData | None = None) -> None:
        super().__init__(message)
        self.error = error


@dataclass(frozen=True)
class ServerInfo:
    name: str
    version: str
    protocol_version: str


@dataclass(frozen=True)
class SessionWork:
    """What a piece of work gets: the open session and who the server said it is."""

    session: ClientSession
    server: ServerInfo
