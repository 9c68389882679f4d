"""Rendering every failure — ours, the framework's and crashes — in the envelope of SPEC §2."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from personal_connectors.exceptions import (
    APIError,
    InternalError,
    MethodNotAllowed,
    PayloadTooLarge,
    ResourceNotFound,
    ServiceUnavailable,
    UnsupportedMediaType,
    ValidationFailed,
)
from personal_connectors.http.context import request_id_of
from personal_connectors.http.envelope import error_response
from personal_connectors.storage.database import database_unavailable

logger = logging.getLogger(__name__)


def database_unavailable_error() -> ServiceUnavailable:
    return ServiceUnavailable(
        "The database did not answer (restarting or failing over); retry after Retry-After.",
        message="The service is briefly unavailable. Please try again in a few seconds.",
        headers={"Retry-After": "2"},
    )


def _field_name(location: tuple[Any, ...]) -> str:
    parts = [str(part) for part in location]
    if parts and parts[0] in {"body", "query", "path", "header", "cookie"} and len(parts) > 1:
        parts = parts[1:]
    return ".".join(parts)


def _is_json(media_type: str) -> bool:
    kind, _, subtype = media_type.partition("/")
    return kind == "application" and (subtype == "json" or subtype.endswith("+json"))


def validation_error(exc: RequestValidationError, content_type: str | None) -> APIError:
    """Framework validation → 400 VALIDATION_ERROR naming the fields (never echoing inputs).

    ``content_type``: the request's header. A body sent as anything but JSON is not read as
    JSON at all, and the answer says that, not that fields are missing."""
    errors = exc.errors()
    if any(item.get("type") == "json_invalid" for item in errors):
        return ValidationFailed.for_fields("The request body is not valid JSON.", "body")
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if any(tuple(item.get("loc", ())) == ("body",) for item in errors) and not _is_json(media_type):
        said = f"`{media_type[:100]}`" if media_type else "no Content-Type"
        return ValidationFailed.for_fields(
            f"The request body must be JSON sent with `Content-Type: application/json`; "
            f"this request sent {said}.",
            "body",
        )
    fields: list[str] = []
    messages: list[str] = []
    for item in errors:
        name = _field_name(tuple(item.get("loc", ())))
        if name not in fields:
            fields.append(name)
        messages.append(f"{name}: {item.get('msg', 'invalid')}")
    return ValidationFailed.for_fields("; ".join(messages)[:500] or "Invalid request.", *fields)


def http_error(exc: StarletteHTTPException) -> APIError:
    if isinstance(exc.__cause__, APIError):
        # FastAPI wraps failures while reading the body (our size cap among them) in a 400.
        return exc.__cause__
    if exc.status_code == 404:
        return ResourceNotFound("No route matches this path.")
    if exc.status_code == 405:
        return MethodNotAllowed("This path does not accept this method.")
    if exc.status_code == 413:
        return PayloadTooLarge()
    if exc.status_code == 415:
        return UnsupportedMediaType()
    if 400 <= exc.status_code < 500:
        error = ValidationFailed(str(exc.detail)[:200])
        error.status = exc.status_code
        return error
    return InternalError()


def install_error_handlers(app: FastAPI) -> None:
    async def on_api_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, APIError)
        return error_response(exc, request_id_of(request.scope))

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        error = validation_error(exc, request.headers.get("content-type"))
        return error_response(error, request_id_of(request.scope))

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        response = error_response(http_error(exc), request_id_of(request.scope))
        if exc.status_code == 405 and exc.headers:
            response.headers.update(exc.headers)
        return response

    async def on_crash(request: Request, exc: Exception) -> JSONResponse:
        if database_unavailable(exc):
            # A restart or failover of the database: nothing is wrong with the request, and
            # the same request succeeds in a moment. Said so, with when to retry.
            logger.warning(
                "database unavailable on %s %s (request %s)",
                request.method,
                request.url.path,
                request_id_of(request.scope),
            )
            return error_response(database_unavailable_error(), request_id_of(request.scope))
        logger.error(
            "unhandled %s on %s %s (request %s)",
            type(exc).__name__,
            request.method,
            request.url.path,
            request_id_of(request.scope),
        )
        return error_response(InternalError(), request_id_of(request.scope))

    app.add_exception_handler(APIError, on_api_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_crash)
