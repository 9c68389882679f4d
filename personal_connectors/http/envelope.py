"""The one error body of SPEC §2, with the trace id echoed in ``X-Request-ID``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from personal_connectors.exceptions import APIError

REQUEST_ID_HEADER = "X-Request-ID"


class ErrorDetail(BaseModel):
    """What went wrong: ``message`` for people, ``system_message`` for developers."""

    model_config = ConfigDict(extra="forbid")

    code: str = Field(examples=["VALIDATION_ERROR"])
    message: str
    system_message: str
    type: Literal[
        "validation_error",
        "authentication_error",
        "authorization_error",
        "not_found_error",
        "client_error",
        "rate_limit_error",
        "server_error",
    ]
    status: int = Field(ge=400, le=599)
    details: dict[str, Any] = Field(
        description="`fields` names the request fields at fault, where there are any."
    )
    trace_id: str = Field(pattern=r"^req_[0-9a-f]{32}$", description="Also the `X-Request-ID`.")
    timestamp: datetime


# Describes what ``envelope`` builds, for the OpenAPI document (built as a dict on the hot path).
class ErrorEnvelope(BaseModel):
    """The error body of every route and failure (SPEC §2)."""

    model_config = ConfigDict(extra="forbid", title="Error")

    success: Literal[False]
    error: ErrorDetail


def envelope(error: APIError, trace_id: str) -> dict[str, Any]:
    return {
        "success": False,
        "error": {
            "code": error.code,
            "message": error.message,
            "system_message": error.system_message,
            "type": error.type,
            "status": error.status,
            "details": error.details,
            "trace_id": trace_id,
            "timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
    }


def error_response(error: APIError, trace_id: str) -> JSONResponse:
    headers = {**error.headers, REQUEST_ID_HEADER: trace_id}
    return JSONResponse(envelope(error, trace_id), status_code=error.status, headers=headers)
