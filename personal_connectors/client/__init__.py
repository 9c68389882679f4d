"""A typed Python client of the service's API (SPEC §9), sync and async, on httpx.

It imports nothing of the server (only httpx and the standard library), so a platform's code
can use it without the service's own dependencies being loaded::

    from personal_connectors.client import Connectors

    with Connectors("http://127.0.0.1:8080", service_key, end_user_id="user-42") as pc:
        for connection in pc.connections():
            token = pc.token(connection.id)
"""

from personal_connectors.client.aio import AsyncConnectors, AsyncEndUsers, AsyncProxy
from personal_connectors.client.core import TOKEN_MARGIN, UNDATED_TOKEN_REUSE
from personal_connectors.client.errors import ConnectorsError
from personal_connectors.client.sync import Connectors, EndUsers, Proxy
from personal_connectors.client.types import (
    Authorization,
    Completion,
    Connection,
    ConnectionSummary,
    EndUser,
    FlowError,
    Health,
    TestResult,
    Token,
)

__all__ = [
    "TOKEN_MARGIN",
    "UNDATED_TOKEN_REUSE",
    "AsyncConnectors",
    "AsyncEndUsers",
    "AsyncProxy",
    "Authorization",
    "Completion",
    "Connection",
    "ConnectionSummary",
    "Connectors",
    "ConnectorsError",
    "EndUser",
    "EndUsers",
    "FlowError",
    "Health",
    "Proxy",
    "TestResult",
    "Token",
]
