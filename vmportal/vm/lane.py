"""A fast lane in front of the router for the two hottest reads, "list my VMs" and "get one VM".

Every page a unit admin opens asks these two. With the answer already built by PostgreSQL
(``vmportal.vm.repository.sql``), FastAPI's own per-request work (route matching over every route,
dependency resolution, its exception and exit-stack layers) was most of what remained: measured in
docs/production.md. This plain ASGI layer answers a request that is exactly one of the two, with a
valid query and a live bearer token, straight from the reader; anything else (no reader, SQLite,
a malformed query, no or a dead token, a VM not visible, a database error) goes on to the router,
where ``vmportal.vm.api`` answers it in full, with the portal's error shapes. It sits inside the
request-id and latency middlewares, so both still see every request.
"""

from __future__ import annotations

import functools
import re
from types import SimpleNamespace
from urllib.parse import parse_qsl

from pydantic import ValidationError
from starlette.types import ASGIApp, Receive, Scope, Send

from vmportal.kit.http import bearer_from_header
from vmportal.vm.repository import sql as reads
from vmportal.vm.schemas import MAX_ID, PREFIX, VMFilters, VMListQuery

_LIST = f"{PREFIX}/vms"
_ONE = re.compile(rf"{PREFIX}/vms/([1-9][0-9]{{0,9}})")

# What the latency middleware labels these requests with (the routes' own templates).
_LIST_ROUTE = SimpleNamespace(path=_LIST)
_ONE_ROUTE = SimpleNamespace(path=_LIST + "/{vm_id}")


@functools.lru_cache(maxsize=1024)
def _filters(query_string: bytes) -> VMFilters | None:
    """The filters of a query string, None when it is not valid. Cached: pages ask the same few
    queries over and over (the first page above all), and the result is immutable."""
    query = parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)
    try:
        return VMFilters.of(VMListQuery.model_validate(dict(query)))  # the route's own validation
    except ValidationError:
        return None


def _token(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            return bearer_from_header(value.decode("latin-1"))
    return None


class ReadLane:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = None
        if scope["type"] == "http" and scope["method"] == "GET":
            body = await self._answer(scope)
        if body is None:
            await self.app(scope, receive, send)
            return
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _answer(self, scope: Scope) -> bytes | None:
        path = scope["path"]
        if path != _LIST and not path.startswith(_LIST + "/"):
            return None
        app = scope.get("app")
        reader: reads.VMReader | None = getattr(getattr(app, "state", None), "vm_reader", None)
        if reader is None or not reader.usable:
            return None
        token = _token(scope)
        if token is None:
            return None
        try:
            if path == _LIST:
                filters = _filters(scope["query_string"])
                if filters is None:
                    return None  # the router answers the 422 naming the fields
                scope["route"] = _LIST_ROUTE
                return await reader.list_vms(token, filters)
            match = _ONE.fullmatch(path)
            if match is None or int(match[1]) > MAX_ID:
                return None
            body = await reader.get_vm(token, int(match[1]))
            if body is None:
                return None  # the router answers the 401 or the 404
            scope["route"] = _ONE_ROUTE
            return body
        except Exception:
            scope.pop("route", None)
            return None
