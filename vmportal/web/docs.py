"""The API's interactive documentation (Swagger UI at /docs) served from the portal itself.

FastAPI's own /docs page loads Swagger UI from a CDN, which a campus intranet often cannot reach;
this one uses the copy vendored under /static/vendor/swagger-ui/ and an init script of ours
instead of an inline one, so the page can (and does) carry a Content-Security-Policy that lets it
talk to nothing but this server.

Wiring (the app factory): ``FastAPI(..., docs_url=None)`` then ``install_docs(app)``.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Final

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.openapi.docs import swagger_ui_default_parameters
from fastapi.responses import HTMLResponse, PlainTextResponse, Response
from markupsafe import Markup, escape

from vmportal.web import static

log = logging.getLogger(__name__)

SWAGGER_FILES: Final = (
    "vendor/swagger-ui/swagger-ui-bundle.js",
    "vendor/swagger-ui/swagger-ui.css",
    "vendor/swagger-ui/oauth2-redirect.js",
    "vendor/swagger-ui/favicon-32x32.png",
    "swagger-init.js",
)

# Swagger UI styles its widgets with inline style attributes and draws icons from data: URLs;
# everything else, scripts and the requests it makes included, may come from this server only.
DOCS_CSP: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; font-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


def _headers() -> dict[str, str]:
    return {
        "content-security-policy": DOCS_CSP,
        "cache-control": "no-cache",
        "referrer-policy": "no-referrer",
    }


def _unavailable(missing: list[str]) -> Response:
    return PlainTextResponse(
        "API 文档页所需的 Swagger UI 文件尚未安装（请运行 scripts/vendor-assets.sh）。\n"
        "The Swagger UI files of this page are not installed (run scripts/vendor-assets.sh).\n"
        "Missing: " + ", ".join(missing) + "\n",
        status_code=503,
        headers={"cache-control": "no-store"},
    )


def install_docs(app: FastAPI, *, docs_url: str = "/docs") -> None:
    """Serve Swagger UI at ``docs_url`` and its OAuth2 redirect page, from the vendored files, and
    mount /static (if not yet mounted). The app must be created with ``docs_url=None``."""
    if app.openapi_url is None:
        raise ValueError("install_docs needs the app's OpenAPI document (openapi_url is None)")
    if any(getattr(route, "path", None) == docs_url for route in app.router.routes):
        raise ValueError(f"{docs_url} is already served: create the app with docs_url=None")
    static.mount_static(app)
    missing = [f for f in SWAGGER_FILES if not (static.STATIC_DIR / f).is_file()]
    if missing:
        log.error(
            "Swagger UI files missing, /docs will answer 503: %s (run scripts/vendor-assets.sh)", missing
        )
    openapi_url = app.openapi_url
    redirect_url = app.swagger_ui_oauth2_redirect_url or f"{docs_url}/oauth2-redirect"
    parameters: dict[str, Any] = {
        **swagger_ui_default_parameters,
        "validatorUrl": None,  # the default validator is a public web service
        **(app.swagger_ui_parameters or {}),
    }
    init_oauth = app.swagger_ui_init_oauth
    title = f"{app.title} API"

    @app.get(docs_url, include_in_schema=False)
    async def swagger_ui(request: Request) -> Response:
        if still_missing := [f for f in SWAGGER_FILES if not (static.STATIC_DIR / f).is_file()]:
            return _unavailable(still_missing)
        root = request.scope.get("root_path", "").rstrip("/")

        def url(relative: str) -> str:
            return static.static_url(relative, root_path=root)

        html = Markup(
            "<!doctype html>\n"
            '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            "<title>{title}</title>\n"
            '<link rel="stylesheet" href="{css}">\n'
            '<link rel="icon" type="image/png" href="{icon}">\n'
            "</head>\n<body>\n"
            '<div id="swagger-ui"></div>\n'
            '<script src="{bundle}"></script>\n'
            '<script src="{init}" data-openapi-url="{openapi}" data-oauth2-redirect-url="{redirect}"'
            ' data-parameters="{parameters}" data-init-oauth="{init_oauth}"></script>\n'
            "</body>\n</html>\n"
        ).format(
            title=title,
            css=url("vendor/swagger-ui/swagger-ui.css"),
            icon=url("vendor/swagger-ui/favicon-32x32.png"),
            bundle=url("vendor/swagger-ui/swagger-ui-bundle.js"),
            init=url("swagger-init.js"),
            openapi=root + openapi_url,
            redirect=root + redirect_url,
            parameters=json.dumps(jsonable_encoder(parameters)),
            init_oauth=json.dumps(jsonable_encoder(init_oauth)) if init_oauth else "",
        )
        return HTMLResponse(str(html), headers=_headers())

    @app.get(redirect_url, include_in_schema=False)
    async def swagger_ui_redirect(request: Request) -> Response:
        if not (static.STATIC_DIR / "vendor/swagger-ui/oauth2-redirect.js").is_file():
            return _unavailable(["vendor/swagger-ui/oauth2-redirect.js"])
        root = request.scope.get("root_path", "").rstrip("/")
        script = static.static_url("vendor/swagger-ui/oauth2-redirect.js", root_path=root)
        html = Markup(
            '<!doctype html>\n<html lang="en">\n<head><meta charset="utf-8">'
            "<title>Swagger UI: OAuth2 Redirect</title></head>\n"
            '<body><script src="{}"></script></body>\n</html>\n'
        ).format(escape(script))
        return HTMLResponse(str(html), headers=_headers())
