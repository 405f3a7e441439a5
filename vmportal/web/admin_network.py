"""IP 地址池 and 虚拟化平台连接: the center's address pools (/admin/pools: sortable, filterable, paged,
with their size, used and free counts, and the form that creates one through network.service
create_pool, as POST /api/v1/pools) and its hypervisor connections (/admin/connections, each with
the outcome of its last check and a "test connection" button: connection.service.check_connection,
as POST /api/v1/connections/{id}/test; with htmx the answer replaces the connection's result cell,
without JavaScript the list is shown again with the result at the top).

The pool form checks what the API's PoolIn checks (required fields, lengths, how many DNS servers
and exclusions), then the service checks the network, the gateway, the exclusions, the connection
and the name; every refusal is shown beside its field with the rule, the typed values kept, nothing
written. Only the center administrator creates a pool; the center's staff test a connection (the
API's rule: the operator on duty tests one too); the auditor reads both lists.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlmodel import Session

from hypervisors.base import ConnectionCheck
from policies.roles import Role
from vmportal.connection import service as connections
from vmportal.connection.models import HypervisorConnection
from vmportal.identity import service as identity
from vmportal.identity.models import User
from vmportal.kit import errors
from vmportal.kit.http import SessionDep
from vmportal.network import service as network
from vmportal.network.models import IPPool
from vmportal.web import common
from vmportal.web.admin_common import ADMINS, READERS, listing, refused, shown, templates, typed_id, with_rule
from vmportal.web.i18n import gettext as _
from vmportal.web.session import current as _current
from vmportal.web.session import to_login as _to_login

router = APIRouter(include_in_schema=False)

POOLS = "/admin/pools"
CONNECTIONS = "/admin/connections"
#: Who tests a connection: the API's require(*CENTER).
TESTERS = frozenset({Role.CENTER_ADMIN.value, Role.CENTER_OPERATOR.value})
POOL_FIELDS = ("name", "cidr", "gateway", "dns", "excluded", "network", "connection_id")
#: The API's PoolIn bounds: (max length, required).
_TEXT_BOUNDS = {"name": (100, True), "cidr": (64, True), "gateway": (64, True), "network": (200, False)}
MAX_DNS = 4
MAX_EXCLUDED = 200


def _refuse(request: Request, token: str, user: User, action: str) -> Response:
    reasons = {
        "pools.read": ("pool.read", POOLS, _("only the center's staff and the auditor see the IP pools")),
        "pools.create": ("pool.create", POOLS, _("only the center administrator creates an IP pool")),
        "connections.read": (
            "connection.read",
            CONNECTIONS,
            _("only the center's staff and the auditor see the hypervisor connections"),
        ),
        "connections.test": (
            "connection.test",
            CONNECTIONS,
            _("only the center's administrators and operators test a hypervisor connection"),
        ),
    }
    rule, active, reason = reasons[action]
    return refused(request, token, user, active, rule, reason)


def _entries(text: str) -> list[str]:
    """The DNS servers or exclusions typed one per line or separated by commas or spaces."""
    return [e for e in re.split(r"[\s,，]+", text) if e]


def _network_key(cidr: str) -> tuple[int, int]:
    net = network.parse_cidr(cidr)
    return net.version, int(net.network_address)


# ---- IP pools ------------------------------------------------------------------------------------------


def _pools_page(
    request: Request,
    session: Session,
    token: str,
    user: User,
    *,
    errs: dict[str, str] | None = None,
    values: dict[str, str] | None = None,
    flash: tuple[str, str] | None = None,
    status: int = 200,
) -> Response:
    query = request.query_params if request.method == "GET" else {}
    q = str(query.get("q", "")).strip()[:100]
    wanted_connection = typed_id(str(query.get("connection_id", "")))
    conns = connections.list_connections(session)
    conn_names = {c.id: c.name for c in conns}
    counts: dict[int | None, network.Counts] = {}
    for pool in network.list_pools(session):
        counts[pool.id] = network.counts(session, pool)
    needle = q.casefold()

    def keep(p: IPPool) -> bool:
        if wanted_connection is not None and p.connection_id != wanted_connection:
            return False
        return not needle or needle in p.name.casefold() or needle in p.cidr

    found = listing(
        network.list_pools(session),
        {
            "name": lambda p: p.name.casefold(),
            "cidr": lambda p: _network_key(p.cidr),
            "connection": lambda p: conn_names.get(p.connection_id, "").casefold(),
            "free": lambda p: counts[p.id].free,
        },
        sort=str(query.get("sort", "")),
        order=str(query.get("order", "")),
        page=int(str(query.get("page", "1"))) if str(query.get("page", "1")).isdigit() else 1,
        default="name",
        keep=keep,
    )
    errs = errs or {}
    flashes = [flash] if flash else []
    if "" in errs:
        flashes.append(("error", errs[""]))
    connection_options = [("", _("None"))] + [(str(c.id), c.name) for c in conns]
    context = {
        **common.base(token, user, _("IP pools"), POOLS),
        "rows": [
            {"p": p, "connection": conn_names.get(p.connection_id, ""), "counts": counts[p.id]}
            for p in found.rows
        ],
        "listing": found,
        "filters": {"q": q, "connection_id": str(wanted_connection or "")},
        "filter_connections": [("", _("Any"))] + [(str(c.id), c.name) for c in conns],
        "connection_options": connection_options,
        "may_create": user.role in ADMINS,
        "why_not": _("Only the center administrator creates an IP pool."),
        "values": values or {},
        "errors": {k: v for k, v in errs.items() if k},
        "labels": {
            "name": _("Name"),
            "cidr": _("Network (CIDR)"),
            "gateway": _("Gateway"),
            "dns": _("DNS servers"),
            "excluded": _("Addresses never handed out"),
            "network": _("Port group or bridge"),
            "connection_id": _("Default pool of the connection"),
        },
        "flashes": flashes,
    }
    return templates.TemplateResponse(request, "pools.html", context, status_code=status)


@router.get(POOLS, response_class=HTMLResponse)
def pool_list(request: Request, session: SessionDep, done: str = "", id: int = 0) -> Response:
    current = _current(request, session)
    if current is None:
        return _to_login(request)
    token, user = current
    if user.role not in READERS:
        return _refuse(request, token, user, "pools.read")
    flash = None
    if done == "created" and (pool := network.find_pool(session, id)) is not None:
        flash = ("success", _("The IP pool %(name)s is created.") % {"name": pool.name})
    return _pools_page(request, session, token, user, flash=flash)


def _check_pool_form(typed: dict[str, str]) -> tuple[dict[str, str], dict[str, Any]]:
    """What the API's PoolIn refuses, beside its field; the values for create_pool otherwise."""
    problems: dict[str, str] = {}
    for field, (longest, required) in _TEXT_BOUNDS.items():
        if required and not typed[field]:
            problems[field] = with_rule(_("This field is required."), "required")
        elif len(typed[field]) > longest:
            problems[field] = with_rule(_("At most %(max)d characters.") % {"max": longest}, "max_length")
    dns, excluded = _entries(typed["dns"]), _entries(typed["excluded"])
    if len(dns) > MAX_DNS:
        problems["dns"] = with_rule(_("At most %(max)d DNS servers.") % {"max": MAX_DNS}, "max_items")
    if len(excluded) > MAX_EXCLUDED:
        problems["excluded"] = with_rule(_("At most %(max)d entries.") % {"max": MAX_EXCLUDED}, "max_items")
    connection_id = typed_id(typed["connection_id"]) if typed["connection_id"] else None
    if typed["connection_id"] and connection_id is None:
        problems["connection_id"] = with_rule(_("Choose one of the connections listed."), "exists")
    values = {
        "name": typed["name"],
        "cidr": typed["cidr"],
        "gateway": typed["gateway"],
        "dns": dns,
        "excluded": excluded,
        "network": typed["network"],
        "connection_id": connection_id,
    }
    return problems, values


@router.post(POOLS)
async def create_pool(request: Request, session: SessionDep) -> Response:
    posted = await common.signed_form(templates, request, session)
    if isinstance(posted, Response):
        return posted
    token, user, form = posted
    if user.role not in ADMINS:
        return _refuse(request, token, user, "pools.create")
    typed = {f: str(form.get(f, "")).strip()[:4000] for f in POOL_FIELDS}
    problems, values = _check_pool_form(typed)
    if problems:
        return _pools_page(request, session, token, user, errs=problems, values=typed, status=422)
    try:
        pool = network.create_pool(session, identity.who(user), **values)
    except errors.PortalError as exc:
        session.rollback()  # nothing half-written
        refusal = {k.split(".", 1)[0]: v for k, v in shown(exc, "name").items()}
        field = next(iter(refusal))
        if field not in POOL_FIELDS:
            refusal = {"": refusal[field]}
        return _pools_page(request, session, token, user, errs=refusal, values=typed, status=exc.status)
    return RedirectResponse(f"{POOLS}?done=created&id={pool.id}", status_code=303)


# ---- hypervisor connections -------------------------------------------------------------------------


def check_in_words(result: ConnectionCheck | None, conn: HypervisorConnection) -> dict[str, Any]:
    """The outcome of a connection's check as a sentence in the user's language (the adapter's
    own detail kept as it said it)."""
    ok: bool | None
    if result is not None:
        ok, detail = result.ok, result.message
    else:
        ok, detail = conn.last_check_ok, conn.last_check_message
    if ok is None:
        return {"ok": None, "text": _("Not tested yet."), "at": None}
    if ok and result is not None:
        text = _("Connected: %(product)s %(version)s, %(vms)d VMs, %(templates)d templates.") % {
            "product": result.product or conn.kind,
            "version": result.version,
            "vms": result.vm_count,
            "templates": result.template_count,
        }
    elif ok:
        text = _("Connected at the last test: %(detail)s") % {"detail": detail}
    else:
        text = _("The connection failed: %(detail)s") % {"detail": detail or _("no detail given")}
    return {"ok": ok, "text": text, "at": conn.last_check_at}


def _connections_page(
    request: Request,
    session: Session,
    token: str,
    user: User,
    *,
    flash: tuple[str, str] | None = None,
    status: int = 200,
) -> Response:
    query = request.query_params if request.method == "GET" else {}
    q = str(query.get("q", "")).strip()[:100]
    kind = str(query.get("kind", ""))
    kinds = sorted({c.kind for c in connections.list_connections(session)})
    kind = kind if kind in kinds else ""
    needle = q.casefold()

    def keep(c: HypervisorConnection) -> bool:
        if kind and c.kind != kind:
            return False
        return not needle or needle in c.name.casefold() or needle in c.url.casefold()

    found = listing(
        connections.list_connections(session),
        {
            "name": lambda c: c.name.casefold(),
            "kind": lambda c: c.kind,
            "last_check": lambda c: (
                c.last_check_at is None,
                c.last_check_at.isoformat() if c.last_check_at else "",
            ),
        },
        sort=str(query.get("sort", "")),
        order=str(query.get("order", "")),
        page=int(str(query.get("page", "1"))) if str(query.get("page", "1")).isdigit() else 1,
        default="name",
        keep=keep,
    )
    context = {
        **common.base(token, user, _("Hypervisor connections"), CONNECTIONS),
        "rows": [{"c": c, "check": check_in_words(None, c)} for c in found.rows],
        "listing": found,
        "filters": {"q": q, "kind": kind},
        "kind_options": [("", _("Any"))] + [(k, k) for k in kinds],
        "may_test": user.role in TESTERS,
        "why_not": _("Only the center's administrators and operators test a hypervisor connection."),
        "flashes": [flash] if flash else [],
    }
    return templates.TemplateResponse(request, "connections.html", context, status_code=status)


@router.get(CONNECTIONS, response_class=HTMLResponse)
def connection_list(request: Request, session: SessionDep) -> Response:
    current = _current(request, session)
    if current is None:
        return _to_login(request)
    token, user = current
    if user.role not in READERS:
        return _refuse(request, token, user, "connections.read")
    return _connections_page(request, session, token, user)


@router.post(CONNECTIONS + "/{connection_id:int}/test")
async def test_connection(request: Request, session: SessionDep, connection_id: int) -> Response:
    posted = await common.signed_form(templates, request, session)
    if isinstance(posted, Response):
        return posted
    token, user, _form = posted
    if user.role not in TESTERS:
        return _refuse(request, token, user, "connections.test")
    try:
        conn = connections.get_connection(session, connection_id)
    except errors.NotFound:
        message = _("There is no hypervisor connection %(id)d") % {"id": connection_id}
        return common.not_found(templates, request, token, user, CONNECTIONS, message)
    result = connections.check_connection(session, identity.who(user), conn)
    check = check_in_words(result, conn)
    if request.headers.get("hx-request"):
        context = {"c": conn, "check": check, "fresh": True}
        return templates.TemplateResponse(request, "connection_check.html", context)
    message = _("%(name)s: %(result)s") % {"name": conn.name, "result": check["text"]}
    return _connections_page(
        request, session, token, user, flash=("success" if result.ok else "error", message)
    )
