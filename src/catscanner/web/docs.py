"""Swagger UI at /docs, served from this server (FastAPI's own /docs loads it from a CDN, and the
product must work with no internet)."""

from __future__ import annotations

import base64
import hashlib
import os
import re
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

DOCS_URL = "/docs"
DOCS_OAUTH2_REDIRECT_URL = "/docs/oauth2-redirect"
DOCS_STATIC_URL = "/static-docs"
SWAGGER_UI_DIR = Path(__file__).with_name("swagger_ui")  # swagger-ui-dist 5.31.0 from npm, unchanged (see its README.txt)
DOCS_JS, DOCS_CSS, DOCS_FAVICON = "swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png"


def _docs_headers(html: str) -> dict[str, str]:
    """Like PAGE_HEADERS, but letting Swagger UI run: its page starts it with one inline script
    (allowed by hash, no 'unsafe-inline' for scripts) and it sets inline styles."""
    hashes = " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()}'"
        for script in re.findall(r"<script>(.*?)</script>", html, re.S)
    )
    return {
        "Content-Security-Policy": f"default-src 'self'; script-src 'self' {hashes}; "
                                   "style-src 'self' 'unsafe-inline'; img-src 'self' blob: data:; "
                                   "object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
        "X-Content-Type-Options": "nosniff",
    }


class _DocsFiles(StaticFiles):
    """Only the swagger-ui files /docs uses (not its licence files)."""

    def lookup_path(self, path: str) -> tuple[str, os.stat_result | None]:
        return super().lookup_path(path) if path in (DOCS_JS, DOCS_CSS, DOCS_FAVICON) else ("", None)


def install_docs(app: FastAPI) -> None:
    """Swagger UI at /docs, with its JavaScript, CSS and icon served from /static-docs
    (FastAPI's recipe "Self-hosting JavaScript and CSS for docs")."""
    app.mount(DOCS_STATIC_URL, _DocsFiles(directory=SWAGGER_UI_DIR), name="static-docs")

    @app.api_route(DOCS_URL, methods=["GET", "HEAD"], include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        page = get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} - API docs",
            oauth2_redirect_url=DOCS_OAUTH2_REDIRECT_URL,
            swagger_js_url=f"{DOCS_STATIC_URL}/{DOCS_JS}",
            swagger_css_url=f"{DOCS_STATIC_URL}/{DOCS_CSS}",
            swagger_favicon_url=f"{DOCS_STATIC_URL}/{DOCS_FAVICON}",
        )
        html = bytes(page.body).decode()
        return HTMLResponse(html, headers=_docs_headers(html))

    @app.get(DOCS_OAUTH2_REDIRECT_URL, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()
