"""The one error body of SPEC §2, with the trace id echoed in ``X-Request-ID``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi.responses import JSONResponse

from personal_connectors.exceptions import APIError

REQUEST_ID_HEADER = "X-Request-ID"


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
