"""The page lane: ``GET /vms`` (the VM list's page and its HTMX refresh) answered before the router.

What the API's read lane (vmportal/vm/lane.py) does for ``/api/v1/vms``, for the page that shows
the same rows: on PostgreSQL, one statement of the VM reader checks the session cookie (a page
session is the identity token), applies the unit scoping and the filters and answers what the
page's rows show of each VM with the account the layout shows (vmportal.vm.service.reads); the
page is rendered by vmportal/web/vm_list_view.py, the renderer the router's page uses too, so
the two answers are the same bytes (tests/web/test_vm_lane.py compares them).

It answers only what it can answer exactly as the router would; everything else goes on to the
router, which answers it in full: no reader (SQLite, the reader off, another event loop), another
method or path, a query the page would read differently or refuse (a parameter other than q, sort
and page, one given twice, a page that is not a plain positive number, undecodable text), no
cookie or one that is not a live session (the router's page sends the visitor to log in and drops
the cookie), any error.

Where it sits: innermost, inside the language middleware (which makes the request's language
active and adds Content-Language and Vary to an HTML answer) and the admission, metrics, security
headers and request-id layers, so an answer from here carries every header the router's page gets.
It lives among the pages because it renders one; it reads through the VM service, as pages do
(pages never import a repository: .importlinter).
"""

from __future__ import annotations

import re
from types import SimpleNamespace
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from policies.roles import Actor
from vmportal.vm.service import reads
from vmportal.vm.service.choices import Refusal, power_barred_in
from vmportal.web import vm_list_view as view
from vmportal.web import vm_pages
from vmportal.web.session import COOKIE

_PATH = "/vms"
_ROUTE = SimpleNamespace(path=_PATH)  # what the latency middleware labels the request with
_KEYS = frozenset({"q", "sort", "page"})
_PAGE = re.compile(r"[1-9][0-9]{0,8}")
_HTML = b"text/html; charset=utf-8"


class PageLane:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = None
        if scope["type"] == "http" and scope["method"] == "GET" and scope["path"] == _PATH:
            try:
                body = await self._answer(scope)
            except Exception:  # the router answers, with the portal's own handling of the error
                body = None
            if body is None:
                scope.pop("route", None)
        if body is None:
            await self.app(scope, receive, send)
            return
        # As an HTMLResponse of the router: Content-Length, then Content-Type.
        headers = [(b"content-length", str(len(body)).encode()), (b"content-type", _HTML)]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _answer(self, scope: Scope) -> bytes | None:
        app = scope.get("app")
        reader: reads.VMReader | None = getattr(getattr(app, "state", None), "vm_reader", None)
        if reader is None or not reader.usable:
            return None
        request = Request(scope)
        token = request.cookies.get(COOKIE)
        if not token:
            return None
        query = request.query_params.multi_items()
        given = [key for key, _ in query]
        if not set(given) <= _KEYS or len(given) != len(set(given)):
            return None
        values = dict(query)
        if any("\ufffd" in value for value in values.values()):
            return None  # not UTF-8: the router reads it its own way
        page_text = values.get("page", "1")
        if not _PAGE.fullmatch(page_text):
            return None  # the router's 422 (not a number) or its own reading of it
        filters, page, q, sort = vm_pages.list_filters(
            values.get("q"), values.get("sort", "id"), int(page_text)
        )
        found = await reads.list_page(reader, token, filters)
        if found is None:
            return None
        user = found.user
        actor = Actor(user_id=user.id, role=user.role, unit_id=user.unit_id)  # type: ignore[arg-type]
        scope["route"] = _ROUTE
        barred: dict[Any, str] = {}  # rule power_ops depends on the role and the VM's unit only

        def barred_of(unit_id: int | None) -> str:
            if unit_id not in barred:
                refusal: Refusal | None = power_barred_in(actor, unit_id)
                barred[unit_id] = vm_pages.barred_text(refusal)
            return barred[unit_id]

        table = view.Table(
            rows=[
                view.Row(
                    id=vm_id,
                    name=name,
                    unit_name=unit_name or "",
                    ip_address=ip_address or "",
                    power_state=power_state,
                    security_state=security_state,
                    barred=barred_of(unit_id),
                )
                for vm_id, name, unit_id, unit_name, ip_address, power_state, security_state in found.items
            ],
            total=found.total,
            page=page,
            q=q,
            sort=sort,
            query=query,
        )
        return vm_pages.list_html(request, table, user, token).encode()
