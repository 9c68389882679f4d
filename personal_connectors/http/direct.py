"""The HTTP layer's one shortcut: a route's common request answered by a plain Starlette route,
registered just ahead of the FastAPI route that declares it.

Used for the token route (``tokens.endpoints``), where FastAPI's per-request work (solving
dependencies, validating parameters and the answer) cost more CPU than the token read itself,
and for the proxy's (``proxy.endpoints``) and the MCP gateway's (``mcp_servers.endpoints``),
whose calls carry the same checks. ``answer``
handles the requests it recognises and returns None for any other; those go to the declared
route unchanged, which also keeps the OpenAPI document, the validation and its
error envelopes FastAPI's.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

DirectAnswer = Callable[[Request], Awaitable[Response | None]]


class _Shortcut:
    """The shortcut route's ASGI endpoint."""

    def __init__(self, answer: DirectAnswer) -> None:
        self.answer = answer
        self.declared: BaseRoute | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await self.answer(Request(scope, receive))
        if response is not None:
            await response(scope, receive, send)
            return
        assert self.declared is not None  # (set when the route was added)
        await self.declared.handle(scope, receive, send)


def add_direct_route(
    app: FastAPI, path: str, method: str, answer: DirectAnswer, **declaration: Any
) -> None:
    """Add ``answer``'s shortcut for ``method`` requests to ``path``, then the route FastAPI
    declares from ``declaration`` (``FastAPI.add_api_route``'s arguments) right after it."""
    shortcut = _Shortcut(answer)
    app.router.routes.append(Route(path, shortcut, methods=[method], include_in_schema=False))
    app.add_api_route(path, methods=[method], **declaration)
    shortcut.declared = app.router.routes[-1]
