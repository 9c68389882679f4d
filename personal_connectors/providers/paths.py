"""Dotted paths into provider JSON answers: ``authed_user.access_token``, ``emails.0.value``."""

from __future__ import annotations

from typing import Any

_MISSING = object()


def lookup(document: Any, path: str | None) -> Any:
    """The value at ``path``, or None when any step is missing."""
    if not path:
        return None
    current = document
    for step in path.split("."):
        if isinstance(current, dict):
            current = current.get(step, _MISSING)
        elif isinstance(current, list) and step.isdigit() and int(step) < len(current):
            current = current[int(step)]
        else:
            return None
        if current is _MISSING:
            return None
    return current


def lookup_text(document: Any, path: str | None) -> str | None:
    value = lookup(document, path)
    if value is None or isinstance(value, (dict, list)):
        return None
    return str(value)
