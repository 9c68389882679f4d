"""``/docs``: Swagger UI served by the service itself (from the ``swagger_ui_bundle`` package),
so it works without internet access, under a CSP that allows only this origin and cannot be
framed. The API key goes in through Swagger UI's Authorize button (the document's security
schemes, ``http/openapi.py``)."""

from __future__ import annotations

from html import escape
from importlib import resources

from fastapi import FastAPI
from fastapi.responses import FileResponse, HTMLResponse, Response
from swagger_ui_bundle import swagger_ui_path  # type: ignore[import-untyped]

from personal_connectors.exceptions import ResourceNotFound

DOCS_PATH = "/docs"
# The bundle's folder name carries its version (``swagger-ui-5.31.0``): the assets' URLs change
# with it, so browsers may keep them for good.
ASSETS_PATH = f"{DOCS_PATH}/{swagger_ui_path.name}"
INIT_SCRIPT = f"{DOCS_PATH}/init.js"
_ASSETS = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "favicon-32x32.png": "image/png",
}
_ASSET_CACHE = "public, max-age=31536000, immutable"

# Swagger UI needs this origin only: its scripts and styles, the document and "Try it out"
# calls (connect-src), and data: images its stylesheet embeds.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} — API</title>
<link rel="stylesheet" href="{assets}/swagger-ui.css">
<link rel="icon" type="image/png" href="{assets}/favicon-32x32.png">
</head>
<body>
<div id="swagger-ui" data-openapi-url="{openapi_url}"></div>
<script src="{assets}/swagger-ui-bundle.js"></script>
<script src="{init}"></script>
</body>
</html>
"""


def install_docs(app: FastAPI) -> None:
    """Add ``/docs`` and its assets to ``app`` (created with ``docs_url=None``)."""
    page = _PAGE.format(
        title=escape(app.title),
        assets=ASSETS_PATH,
        openapi_url=escape(app.openapi_url or ""),
        init=INIT_SCRIPT,
    )
    init_script = resources.files("personal_connectors").joinpath("static", "docs.js")

    @app.get(DOCS_PATH, include_in_schema=False)
    async def docs() -> HTMLResponse:
        return HTMLResponse(page, headers=PAGE_HEADERS)

    @app.get(INIT_SCRIPT, include_in_schema=False)
    async def docs_init() -> Response:
        return Response(
            init_script.read_text("utf-8"),
            media_type="text/javascript",
            headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
        )

    @app.get(f"{ASSETS_PATH}/{{name}}", include_in_schema=False)
    async def docs_asset(name: str) -> FileResponse:
        media_type = _ASSETS.get(name)
        if media_type is None:
            raise ResourceNotFound("No such documentation asset.")
        return FileResponse(
            swagger_ui_path / name,
            media_type=media_type,
            headers={"Cache-Control": _ASSET_CACHE, "X-Content-Type-Options": "nosniff"},
        )
