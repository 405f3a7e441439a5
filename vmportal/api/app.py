"""The FastAPI application: routers under /api/v1, one error shape, start-up work."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from vmportal import __version__, context, db, errors
from vmportal.settings import Settings, get_settings, use_settings

log = logging.getLogger(__name__)

API = "/api/v1"


def _error(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": body}, status_code=status, headers=headers)


def _validation_fields(exc: RequestValidationError) -> tuple[int, list[dict[str, Any]]]:
    fields = []
    status = 422
    for e in exc.errors():
        loc = [str(p) for p in e.get("loc", ())]
        if e.get("type") == "json_invalid":
            status = 400  # the body is not JSON at all: a syntax error, not a field's rule
        where = ".".join(p for p in loc if p not in ("body", "query", "path", "header")) or ".".join(loc)
        fields.append({"field": where, "rule": e.get("type", "invalid"), "message": e.get("msg", "")})
    return status, fields


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(errors.PortalError)
    async def portal_error(_: Request, exc: errors.PortalError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return _error(exc.status, exc.body(), headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        status, fields = _validation_fields(exc)
        if status == 400:
            return _error(
                400,
                {
                    "code": "malformed_json",
                    "message": "request body is not valid JSON",
                    "message_zh": "请求体不是合法的 JSON",
                    "fields": fields,
                },
            )
        summary = "; ".join(f"{f['field']}: {f['message']}" for f in fields)
        return _error(
            422,
            {
                "code": "validation_error",
                "message": summary,
                "message_zh": "输入校验失败：" + summary,
                "fields": fields,
            },
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(
            exc.status_code, {"code": "http_error", "message": str(exc.detail), "message_zh": str(exc.detail)}
        )


def _start_redrive_thread(settings: Settings, stop: threading.Event) -> threading.Thread:
    from vmportal.security import tasks_mail
    from vmportal.tasks import outbox

    # The embedded portal has no beat: this thread does beat's periodic work in-process.
    def loop() -> None:
        while not stop.wait(max(settings.outbox_redrive_seconds // 2, 5)):
            try:
                outbox.redrive()
                tasks_mail.embedded_tick()
            except Exception:
                log.exception("periodic work failed")

    thread = threading.Thread(target=loop, name="vmportal-redrive", daemon=True)
    thread.start()
    return thread


def create_app(settings: Settings | None = None, *, migrate: bool = True) -> FastAPI:
    if settings is not None:
        use_settings(settings)
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        from vmportal import startup

        if settings.startup_prepared:
            startup.prepare(settings, migrate=False, seed=False)
        else:
            startup.prepare(settings, migrate=migrate)
        stop = threading.Event()
        if settings.effective_task_mode == "thread":
            _start_redrive_thread(settings, stop)
        yield
        stop.set()

    app = FastAPI(
        title="vmportal",
        version=__version__,
        description="VM self-service and lifecycle manager of the Network & Information Center "
        "(网络与信息中心虚拟机服务平台).",
        lifespan=lifespan,
        openapi_url="/openapi.json",
        docs_url="/docs",
    )
    install_error_handlers(app)
    from vmportal import observability

    observability.install(app)

    @app.middleware("http")
    async def request_id(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        rid = request.headers.get("X-Request-ID") or uuid.uuid4().hex
        token = context.request_id.set(rid[:64])
        try:
            response = await call_next(request)
        finally:
            context.request_id.reset(token)
        response.headers["X-Request-ID"] = rid[:64]
        return response

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    from vmportal.api import routes

    routes.include_all(app, API)
    return app


__all__ = ["API", "create_app", "db"]
