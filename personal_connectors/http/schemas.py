"""The base of every request body: unknown fields refused, and no NUL characters anywhere.

PostgreSQL cannot store U+0000 in text; refusing it at the edge keeps SQLite and PostgreSQL
answering the same 400 instead of one of them failing deep in a query.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator


def _has_nul(value: Any) -> bool:
    """Whether any string in ``value`` holds NUL; walked without recursion, since a free-form
    JSON field (a connection's metadata) may nest as deep as the body parser allows."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, (list, tuple)):
            pending.extend(item)
    return False


class RequestBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="after")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        if _has_nul(value):
            raise ValueError("must not contain NUL characters")
        return value
