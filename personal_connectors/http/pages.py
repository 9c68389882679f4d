"""Server-rendered pages: Jinja2 with autoescaping and a strict, per-response CSP."""

from __future__ import annotations

import secrets
from functools import cache
from typing import TYPE_CHECKING, Any

from fastapi import Request
from fastapi.responses import HTMLResponse

if TYPE_CHECKING:
    from jinja2 import Environment


@cache
def _environment() -> Environment:
    """Built on the first page served: Jinja2 is not needed to start (or to hand out tokens)."""
    from jinja2 import Environment, PackageLoader, select_autoescape

    return Environment(
        loader=PackageLoader("personal_connectors", "templates"),
        autoescape=select_autoescape(["html"]),
    )


def render_page(template: str, *, status_code: int = 200, **context: Any) -> HTMLResponse:
    nonce = secrets.token_urlsafe(16)
    html = _environment().get_template(template).render(nonce=nonce, **context)
    headers = {
        "Content-Security-Policy": (
            f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'unsafe-inline'; "
            "img-src 'self' https: data:; base-uri 'none'; form-action 'self'; "
            "frame-ancestors 'none'"
        ),
        "Cache-Control": "no-store",
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
    }
    return HTMLResponse(html, status_code=status_code, headers=headers)


def wants_json(request: Request) -> bool:
    """A script asking for data (``Accept: application/json``) rather than a browser navigating
    (whose ``Accept`` lists ``text/html``): the routes that serve both answer each its way."""
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept
