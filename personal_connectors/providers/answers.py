"""Reading what a provider's answer means beyond its status code."""

from __future__ import annotations

import httpx


def says_not_ok(response: httpx.Response) -> bool:
    """Slack and a few others answer 200 with ``{"ok": false}`` when the call did not work."""
    if "json" not in response.headers.get("content-type", ""):
        return False
    try:
        payload = response.json()
    except ValueError:
        return False
    return isinstance(payload, dict) and payload.get("ok") is False
