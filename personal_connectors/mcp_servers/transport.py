"""The MCP SDK's HTTP calls, made by the process's one shared client.

The SDK speaks HTTP through ``httpx2``; the service sends every outbound call through its own
``httpx`` client (``runtime.http``: one pool, the outbound guard, no cookies, no redirects).
``SharedClientTransport`` is the ``httpx2`` transport that hands each request the SDK makes to
that client (as a plain request to its transport: the SDK's own client has already done what
httpx's client layer would) and gives the answer back streamed, so a server-sent event stream
flows as it comes.
It also remembers whether the server refused the token (HTTP 401, with its challenge) or no
longer knows the session (HTTP 404 to a request naming one): the SDK turns any error status into
a generic JSON-RPC error, and these are the cases worth a new token (or, for a server called
without one, the start of its authorization discovery) or a new session.

A transport made with ``server_stream=False`` answers the SDK's GET for the server's own event
stream with 405 itself, as a server without one does: a session kept open between calls would
otherwise hold one of the shared client's connections for as long as it lives, for messages
the gateway has nowhere to send.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

import httpx
import httpx2

from personal_connectors.outbound.client import OutboundClient


class _Body(httpx2.AsyncByteStream):
    """An ``httpx`` response's body as an ``httpx2`` stream; closing it closes the response."""

    def __init__(self, response: httpx.Response) -> None:
        self._response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _as_httpx2_errors():
            async for chunk in self._response.aiter_raw():
                yield chunk

    async def aclose(self) -> None:
        await self._response.aclose()


@contextmanager
def _as_httpx2_errors() -> Iterator[None]:
    """The shared client's transport errors, raised as the ``httpx2`` errors the SDK handles."""
    try:
        yield
    except httpx.TimeoutException as exc:
        raise httpx2.ReadTimeout(str(exc)) from exc
    except httpx.ConnectError as exc:  # the outbound guard's refusals among them
        raise httpx2.ConnectError(str(exc)) from exc
    except httpx.TransportError as exc:
        raise httpx2.ReadError(str(exc)) from exc


class SharedClientTransport(httpx2.AsyncBaseTransport):
    def __init__(self, client: OutboundClient, *, server_stream: bool = True) -> None:
        self._client = client
        self._server_stream = server_stream
        self.refused_token = False
        self.challenge: str | None = None
        self.session_lost = False

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        if request.method == "GET" and not self._server_stream:
            return httpx2.Response(405, request=request)
        body = await request.aread()  # JSON-RPC messages: small, and sent whole anyway
        timeout = request.extensions.get("timeout")
        outbound = self._client.plain_request(
            request.method,
            str(request.url),
            headers=list(request.headers.multi_items()),
            content=body,
            call_seconds=timeout if isinstance(timeout, dict) else self._client.timeout.as_dict(),
        )
        with _as_httpx2_errors():
            response = await self._client.send_streamed(outbound)
        if response.status_code == 401:
            self.refused_token = True
            self.challenge = response.headers.get("www-authenticate")
        elif response.status_code == 404 and "mcp-session-id" in request.headers:
            self.session_lost = True
        return httpx2.Response(
            response.status_code,
            headers=list(response.headers.multi_items()),
            stream=_Body(response),
            request=request,
        )
