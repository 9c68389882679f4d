"""The proxy route: ``GET|POST|PUT|PATCH|DELETE /{connection_id}/proxy/{path}`` (SPEC §9).

The caller is authorized as on ``POST /{id}/token`` (an API key, a service key with
``end_user_id``, or a ``pct_`` token for its end user), by the same function. The body is not
read by the framework: the service streams it.

Like the token route, a busy route of plain requests: a shortcut (``http.direct``) answers
every call but those FastAPI's declared route must validate (an over-long connection id) or
whose header it reads (``X-Connectors-Retries``), without solving dependencies per call.
"""

from __future__ import annotations

import re
from typing import Annotated, Any
from urllib.parse import parse_qsl

from fastapi import Depends, FastAPI, Header, Path, Request
from fastapi.responses import Response, StreamingResponse

from personal_connectors.config import API_PREFIX
from personal_connectors.http.dependencies import RuntimeDep, get_runtime
from personal_connectors.http.direct import add_direct_route
from personal_connectors.http.openapi import error_response, errors
from personal_connectors.models import ID_MAX_LENGTH
from personal_connectors.proxy.exceptions import UnsafePath
from personal_connectors.proxy.service import (
    MAX_RETRIES,
    RETRIES_HEADER,
    ProxyCall,
    ProxyService,
    retries_asked,
)
from personal_connectors.runtime import Runtime
from personal_connectors.tokens.endpoints import authorized, token_request
from personal_connectors.tokens.service import TokenRequest, TokenService

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
# The proxy's paths, for the request body cap of the HTTP layer (``http.context``): only a
# connection id's (``conn_…``), so no other route's path gets the proxy's larger cap.
PROXY_PATH = re.compile(rf"^{re.escape(API_PREFIX)}/conn_[^/]*/proxy/")
# ``{path}`` as the caller sent it, still percent-encoded.
_RAW_PATH = re.compile(rb"^" + re.escape(API_PREFIX.encode()) + rb"/[^/]+/proxy/(.*)$", re.DOTALL)
_NON_ASCII = re.compile(rb"[\x80-\xff]")


DESCRIPTION = f"""Sends the request to the connection's provider API (the connector's
`api_base_url` joined with `path`, the query string less `organization_id`, `organizationId`
and `end_user_id`) with the connection's credentials, and streams the provider's answer back
unchanged, marked `X-Connectors-Proxy: upstream`. The service's own refusals keep the error
envelope and have no such header.

A provider 401 is answered by one refresh of the token and one retry (bodies up to 1 MiB).
`{RETRIES_HEADER}: N` (0-{MAX_RETRIES}) retries an idempotent request (GET, PUT, DELETE) on
429 and 503 after the provider's `Retry-After` (30 s at most)."""


def raw_path(request: Request) -> str:
    """The ``{path}`` as sent (percent-encoding kept), from the raw request target. A byte
    outside ASCII (which a request target cannot hold, but a lenient server may pass on) is
    percent-encoded as itself, so it reaches the provider as the same byte, not as the UTF-8
    of the character it would be read as."""
    raw = request.scope.get("raw_path")
    found = _RAW_PATH.match(raw) if isinstance(raw, bytes) else None
    if found is None:  # e.g. `proxy` itself percent-encoded
        raise UnsafePath("could not be read from the request target")
    return _NON_ASCII.sub(_percent_encoded, found.group(1)).decode("ascii")


def _percent_encoded(byte: re.Match[bytes]) -> bytes:
    return b"%%%02X" % byte.group(0)[0]


async def proxy(
    request: Request,
    # Declared for validation and the OpenAPI document; token_request has already used it.
    connection_id: Annotated[str, Path(min_length=1, max_length=ID_MAX_LENGTH)],
    path: Annotated[
        str, Path(description="The API path under the connector's `api_base_url`, e.g. `user`.")
    ],
    caller: Annotated[TokenRequest, Depends(token_request)],
    runtime: RuntimeDep,
    retries: Annotated[
        str | None,
        Header(
            alias=RETRIES_HEADER,
            description=f"0-{MAX_RETRIES}: retries of an idempotent request on 429 and 503.",
        ),
    ] = None,
) -> Response:
    return await respond(request, caller, runtime, retries_asked(retries))


async def respond(
    request: Request, caller: TokenRequest, runtime: Runtime, retries: int
) -> Response:
    """The provider's answer to the caller's request, as the caller gets it."""
    call = ProxyCall(
        method=request.method,
        path=raw_path(request),
        raw_query=request.scope.get("query_string", b"").decode("latin-1"),
        headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw],
        chunks=request.stream(),
        retries=retries,
        declared_length=request.headers.get("content-length"),
    )
    answer = await ProxyService(runtime).call(caller, call)
    response: Response
    if isinstance(answer.body, bytes):
        response = Response(answer.body, status_code=answer.status)
    else:
        response = StreamingResponse(answer.body, status_code=answer.status)
    response.raw_headers = [
        (name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in answer.headers
    ]
    return response


_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The provider's answer, whatever its status (marked by the header "
        "`X-Connectors-Proxy: upstream`)."
    },
    **errors(409, 502, 503, 504),
    413: {
        **error_response(413),
        "description": "`PAYLOAD_TOO_LARGE`: the body is over `CONNECTORS_PROXY_MAX_BODY_BYTES` "
        "(10 MiB by default).",
    },
}


async def plain_proxy_request(request: Request) -> Response | None:
    """The shortcut's answer: the declared route's work without its dependency solving (the
    caller authorized by the same function, the service's query parameters read as FastAPI
    reads them: the last of a repeated name wins); None for a call the declared route must
    take."""
    if RETRIES_HEADER in request.headers or (
        len(request.path_params["connection_id"]) > ID_MAX_LENGTH
    ):
        return None
    query = dict(parse_qsl(request.scope["query_string"].decode("latin-1"), keep_blank_values=True))
    organization_id = query.get("organization_id") or query.get("organizationId")
    runtime = await get_runtime(request)
    service = TokenService(None, runtime)
    caller = await authorized(service, request, organization_id, query.get("end_user_id"))
    return await respond(request, caller, runtime, 0)


def add_proxy_routes(app: FastAPI) -> None:
    """The proxy's routes, one a method, each with its shortcut (on the application's own
    router, as the token route: an included router is matched twice)."""
    for method in METHODS:
        add_direct_route(
            app,
            f"{API_PREFIX}/{{connection_id}}/proxy/{{path:path}}",
            method,
            plain_proxy_request,
            endpoint=proxy,
            name=f"proxy_{method.lower()}",
            summary=f"{method} on the connection's provider API",
            description=DESCRIPTION,
            responses=_RESPONSES,
            response_class=StreamingResponse,
            tags=["Proxy"],
        )
