"""The FastAPI application: routers under /api/v1, one error shape, start-up work."""

from __future__ import annotations

import itertools
import logging
import threading
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vmportal import __version__
from vmportal.app import guards, http_errors, inputs, metrics, openapi, registry  # noqa: F401  (registry: every task known to this process)
from vmportal.kit import context, db, errors
from vmportal.kit.settings import Settings, get_settings, use_settings

log = logging.getLogger(__name__)

API = "/api/v1"


# A request id: this process's random prefix and a counter (unique across processes and restarts
# without asking the kernel for random bytes on every request).
_ID_PREFIX = uuid.uuid4().hex[:16]
_id_counter = itertools.count(1)


def _new_request_id() -> str:
    return f"{_ID_PREFIX}{next(_id_counter):016x}"


class _RequestId:
    """The request id (the caller's X-Request-ID or a new one) in the logging context and echoed in
    the answer, as plain ASGI: Starlette's ``@app.middleware("http")`` runs every request through an
    extra task and memory streams, which costs more than most of the portal's reads."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = (Headers(scope=scope).get("x-request-id") or _new_request_id())[:64]

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)["X-Request-ID"] = rid
            await send(message)

        token = context.request_id.set(rid)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            context.request_id.reset(token)


def _start_redrive_thread(settings: Settings, stop: threading.Event) -> threading.Thread:
    from vmportal.app import beat as periodic
    from vmportal.jobs import outbox
    from vmportal.mail import tasks as tasks_mail

    # The embedded portal has no beat: this thread does beat's periodic work in-process.
    def loop() -> None:
        while not stop.wait(max(settings.outbox_redrive_seconds // 2, 5)):
            try:
                outbox.redrive()
                tasks_mail.embedded_tick()
                periodic.embedded_tick()  # provisioning reminders; pruning once an hour
            except Exception:
                log.exception("periodic work failed")

    thread = threading.Thread(target=loop, name="vmportal-redrive", daemon=True)
    thread.start()
    return thread


def _token_check(token: str | None) -> None:
    """Raise ``Unauthorized`` unless ``token`` is a live token of an active account."""
    from vmportal.identity import service as identity

    if token is None:
        raise errors.Unauthorized("a bearer token is required", message_zh="需要登录令牌（Bearer）")
    with db.transaction(read_only=True) as session:
        identity.user_for_token(session, token)


def _request_slots(settings: Settings) -> int:
    if settings.request_slots:
        return settings.request_slots
    # Leave connections for what runs beside the requests: in-process tasks, the re-drive and mail
    # threads, a denial audited in a transaction of its own.
    background = settings.task_workers + 4 if settings.effective_task_mode == "thread" else 4
    return max(settings.db_pool_size + settings.db_pool_overflow - background, 4)


def create_app(settings: Settings | None = None, *, migrate: bool = True) -> FastAPI:
    if settings is not None:
        use_settings(settings)
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        from vmportal.app import startup

        if settings.startup_prepared:
            startup.prepare(settings, migrate=False, seed=False)
        else:
            startup.prepare(settings, migrate=migrate)
        stop = threading.Event()
        if settings.effective_task_mode == "thread":
            _start_redrive_thread(settings, stop)
            from vmportal.app.embedded import start_watchers

            start_watchers(settings, stop)  # no `vmportal watch` beside the embedded portal
        from vmportal.vm.repository import sql as reads

        reader = await reads.open_reader(settings)
        app.state.vm_reader = reader
        try:
            yield
        finally:
            stop.set()
            app.state.vm_reader = None
            if reader is not None:
                await reader.close()

    app = FastAPI(
        title="vmportal",
        version=__version__,
        description="VM self-service and lifecycle manager of the Network & Information Center "
        "(网络与信息中心虚拟机服务平台).",
        lifespan=lifespan,
        openapi_url="/openapi.json",
        # /docs is served from the portal's own copy of Swagger UI (campus intranets are often
        # offline): FastAPI's default loads it from a CDN.
        docs_url=None,
        # Integer parameters beyond 64 bits and JSON text that is not Unicode (lone surrogates) are
        # a 422 naming the field, on every route.
        dependencies=[Depends(inputs.int64_params), Depends(inputs.unicode_body)],
    )
    http_errors.install(app)
    from vmportal.vm.lane import ReadLane
    from vmportal.web import docs, i18n, language, pages

    docs.install_docs(app)  # also mounts /static
    app.include_router(language.router)
    app.include_router(pages.router)  # the pages: /, /login, /logout, /account
    from vmportal.web import audit_pages

    app.include_router(audit_pages.router)  # the auditor's /audit-log
    from vmportal.web import request_pages

    app.include_router(request_pages.router)  # 我的申请: /requests, /requests/{id}
    from vmportal.web import portal

    app.include_router(portal.router)  # the role pages: VMs, 申请虚拟机, incidents, the queue
    from vmportal.web import compliance_pages

    app.include_router(compliance_pages.router)  # 隐患与通报: /findings, /notices, /violations
    from vmportal.web.vm_lane import PageLane

    # innermost of all: inside the language layer, so its page is in the request's language and has
    # the headers that layer adds to an HTML answer
    app.add_middleware(PageLane)
    app.add_middleware(i18n.LocaleMiddleware)  # pages only; it lets /api/ through untouched
    app.add_middleware(guards.Admission, slots=_request_slots(settings), wait=settings.request_queue_seconds)
    app.add_middleware(ReadLane)  # innermost: the latency and request-id layers see its answers too

    metrics.register()
    metrics.install(app)
    app.add_middleware(guards.AuthBeforeBody, check=_token_check)
    app.add_middleware(guards.BodyLimit, limit_for=guards.limits(settings))
    app.add_middleware(guards.SecurityHeaders)

    app.add_middleware(_RequestId)

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    from vmportal.app import routes

    routes.include_all(app, API)
    # Both after every route is known: the input rules and the OpenAPI cover all of them.
    inputs.install(app)
    openapi.install(app)
    return app


__all__ = ["API", "create_app", "db"]
