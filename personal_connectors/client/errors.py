"""``ConnectorsError``: a refusal of the service, read from its error envelope (SPEC §2)."""

from __future__ import annotations

from typing import Any

import httpx

# The code of an error answer that is not the service's envelope (a proxy in front of the
# service answering HTML, say): the status and trace id are still read from the response.
UNEXPECTED_ANSWER = "UNEXPECTED_RESPONSE"


class ConnectorsError(Exception):
    """The service refused a call. ``code`` (``RESOURCE_NOT_FOUND``, ``INSUFFICIENT_SCOPE`` …),
    ``status`` (the HTTP status), ``trace_id`` (the ``X-Request-ID`` to quote in a report),
    ``details`` (e.g. ``missing_scopes`` and ``authorize`` for ``INSUFFICIENT_SCOPE``),
    ``message`` (safe to show a person), ``system_message`` (for developers), ``type`` and
    ``retry_after`` (seconds, from ``Retry-After`` on 429 and 503)."""

    def __init__(
        self,
        code: str,
        status: int,
        message: str,
        *,
        system_message: str | None = None,
        type: str | None = None,
        trace_id: str | None = None,
        details: dict[str, Any] | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.code = code
        self.status = status
        self.message = message
        self.system_message = system_message or message
        self.type = type
        self.trace_id = trace_id
        self.details = details or {}
        self.retry_after = retry_after
        super().__init__(f"{status} {code}: {self.system_message} (trace_id {trace_id})")

    @classmethod
    def from_response(cls, response: httpx.Response) -> ConnectorsError:
        trace_id = response.headers.get("x-request-id")
        retry_after = _seconds(response.headers.get("retry-after"))
        try:
            body = response.json()
        except ValueError:
            body = None
        error = body.get("error") if isinstance(body, dict) else None
        if not isinstance(error, dict) or not isinstance(error.get("code"), str):
            return cls(
                UNEXPECTED_ANSWER,
                response.status_code,
                f"The service answered {response.status_code} without its error envelope.",
                trace_id=trace_id,
                retry_after=retry_after,
            )
        details = error.get("details")
        return cls(
            error["code"],
            int(error.get("status") or response.status_code),
            str(error.get("message") or ""),
            system_message=error.get("system_message"),
            type=error.get("type"),
            trace_id=error.get("trace_id") or trace_id,
            details=details if isinstance(details, dict) else {},
            retry_after=retry_after,
        )


def _seconds(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None  # an HTTP date: the service itself always sends seconds
