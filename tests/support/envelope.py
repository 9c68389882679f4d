"""The error envelope of SPEC §2, as tests check it."""

from __future__ import annotations

ENVELOPE_KEYS = frozenset(
    {"code", "message", "system_message", "type", "status", "details", "trace_id", "timestamp"}
)


def is_envelope(body: object, status: int) -> bool:
    if (
        not isinstance(body, dict)
        or set(body) != {"success", "error"}
        or body["success"] is not False
    ):
        return False
    error = body["error"]
    return isinstance(error, dict) and set(error) == ENVELOPE_KEYS and error["status"] == status
