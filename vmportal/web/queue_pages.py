"""待审批: the center's approval queue (/queue), ordered by due time, at-risk and overdue marked;
approve or reject (with a reason told to the unit) and, below, the approved requests still being
provisioned, with their progress and a retry for a failed one, and the latest delivered ones; that
part refreshes itself every 5 s (htmx polling /queue/progress), so the operator watches a
provisioning end without reloading.

The page calls the request service only (list_requests, actions_for, approve, reject, retry): a
request shows the buttons its state lets the user's role take (the service's own table), and a
refusal answers with its reason beside the button. Unit users are refused naming the rule.

The waiting requests are paged, :data:`PAGE_SIZE` a page, soonest due first across the pages: a
queue of a few hundred requests, each with its two forms, was some 350 KB of HTML to render and
send at every visit, while the operator decides the first few (the soonest due, the at-risk and
overdue marks first) and takes the next page when those are done.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlmodel import Session

from policies.roles import Role
from vmportal.identity import service as identity
from vmportal.identity.models import User
from vmportal.kit import errors
from vmportal.kit.http import SessionDep
from vmportal.request import service as requests
from vmportal.request.models import RequestState, VMRequest
from vmportal.web import common, formats, templating
from vmportal.web.i18n import gettext as _
from vmportal.web.request_pages import _row
from vmportal.web.session import current as _current
from vmportal.web.session import to_login as _to_login

router = APIRouter(include_in_schema=False)
_templates = templating.templates(Path(__file__).parent / "templates" / "center")

#: Who decides requests (the request lifecycle's approve and reject).
DECIDERS = frozenset({Role.CENTER_OPERATOR.value, Role.CENTER_ADMIN.value})
WAITING = (RequestState.SUBMITTED, RequestState.ENDORSED)
IN_PROGRESS = (RequestState.APPROVED, RequestState.PROVISIONING, RequestState.FAILED)
#: The requests being provisioned listed at most, the soonest due (one list across their states).
LIMIT = 200
#: Waiting requests per page of the queue.
PAGE_SIZE = 50
#: The latest delivered requests listed under those being provisioned (the operator sees one end).
RECENTLY_DELIVERED = 10
#: A reason typed into the queue's forms (the service keeps 2,000 characters).
MAX_REASON = 2000


def _listed(
    session: Session, user: User, page: int | None = None
) -> tuple[list[tuple[VMRequest, str]], list[tuple[VMRequest, str]], int]:
    """With ``page``: that page of the waiting requests, soonest due first, and how many wait in
    all; always the requests being provisioned, soonest due first, then the newest
    :data:`RECENTLY_DELIVERED` delivered ones. Each with its unit's name.

    One query for them all, each row with its unit's names (the service's ``lists_with_units``):
    the page used to ask each state's list and count apart (eight statements) and to load every
    unit for the names."""
    parts = [
        requests.Part(IN_PROGRESS, limit=LIMIT),
        requests.Part((RequestState.DELIVERED,), limit=RECENTLY_DELIVERED, sort="-id"),
    ]
    if page:
        parts.insert(0, requests.Part(WAITING, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE))
    lists, total = requests.lists_with_units(session, identity.actor_of(user), parts, counted=bool(page))
    zh = common.zh()
    named = [
        [(r, name_zh if zh else name_en or name_zh) for r, name_zh, name_en in listed] for listed in lists
    ]
    progress = named[-2] + named[-1]
    return (named[0] if page else []), progress, total or 0


def _rows(session: Session, user: User, *lists: list[tuple[VMRequest, str]]) -> list[list[dict[str, Any]]]:
    """Each list's rows as the templates show them, with the buttons the user's role may press
    (asked of the service once for all the lists: the center's endorsement setting is one read)."""
    now = datetime.now(UTC)
    actions = iter(
        requests.actions_for(session, identity.actor_of(user), [r for listed in lists for r, _unit in listed])
    )
    return [
        [{**_row(r, now), "actions": next(actions), "unit": unit} for r, unit in listed] for listed in lists
    ]


def _with_texts(
    rows: list[dict[str, Any]], errs: dict[int, dict[str, str]], values: dict[int, dict[str, str]]
) -> list[dict[str, Any]]:
    """The waiting rows with what their items print made here, once a row: the sentences, and a
    refused decision's messages and typed values (``errs``, ``values``: {request id: {field name
    or "": text}}). Each call inside the template's loop (a gettext, a filter, a dict's ``get``)
    goes through Jinja's call machinery, and those calls were most of the page's rendering
    time. Each message is looked up once a page; the values are escaped when the template prints
    the sentence."""
    title, due = _("Request %(id)d"), _("due %(at)s")
    spec = _("%(vcpus)d vCPU, %(memory)s memory, %(disk)s disk")
    confirm = _("Approve request %(id)d and start provisioning?")
    for row in rows:
        req = row["req"]
        row["title"] = title % {"id": req.id}
        row["due"] = due % {"at": formats.local_time(req.due_at)}
        row["spec"] = spec % {
            "vcpus": req.vcpus,
            "memory": formats.gib(req.memory_gib),
            "disk": formats.gib(req.disk_gib),
        }
        row["confirm"] = confirm % {"id": req.id}
        row["errs"] = errs.get(req.id, {})
        row["typed"] = values.get(req.id, {})
        row["error"] = row["errs"].get("", "")
    return rows


def _page(
    request: Request,
    session: Session,
    token: str,
    user: User,
    *,
    errs: dict[int, dict[str, str]] | None = None,
    values: dict[int, dict[str, str]] | None = None,
    flash: tuple[str, str] | None = None,
    status: int = 200,
    page: int = 1,
) -> Response:
    found, progress, total = _listed(session, user, page)
    pages = max((total + PAGE_SIZE - 1) // PAGE_SIZE, 1)
    if page > pages:  # past the end (the last ones were decided meanwhile): the last page
        page = pages
        found, progress, total = _listed(session, user, page)
    waiting, in_progress = _rows(session, user, found, progress)
    flashes = [flash] if flash else []
    # {request id: {field name or "": message}}: an error beside the field (or the buttons) it is
    # about; a request no longer listed (decided meanwhile) has it said at the top instead.
    listed = {r["req"].id for r in waiting + in_progress}
    for request_id, messages in (errs or {}).items():
        if request_id not in listed:
            for message in messages.values():
                flashes.append(
                    ("error", _("Request %(id)d: %(message)s") % {"id": request_id, "message": message})
                )
    context = {
        **common.base(token, user, _("Approval queue"), "/queue"),
        "waiting": _with_texts(waiting, errs or {}, values or {}),
        "waiting_total": total,
        "page": page,
        "pages": pages,
        "first": (page - 1) * PAGE_SIZE + 1,
        "in_progress": in_progress,
        "errors": errs or {},
        "values": values or {},
        "flashes": flashes,
        "may_override": user.role == Role.CENTER_ADMIN.value,
        "max_reason": MAX_REASON,
    }
    return _templates.TemplateResponse(request, "queue.html", context, status_code=status)


def _not_a_decider(request: Request, token: str, user: User, action: str) -> Response:
    message = _("Rule %(rule)s: %(reason)s") % {
        "rule": f"request.{action}",
        "reason": _("only the center's operators and administrators decide requests"),
    }
    return common.refused(_templates, request, token, user, "/queue", message)


@router.get("/queue", response_class=HTMLResponse)
def queue(request: Request, session: SessionDep, done: str = "", id: int = 0, page: int = 1) -> Response:
    current = _current(request, session)
    if current is None:
        return _to_login(request)
    token, user = current
    if user.role not in DECIDERS:
        return _not_a_decider(request, token, user, "approve")
    messages = {
        "approved": _("Request %(id)d is approved; provisioning has started."),
        "rejected": _("Request %(id)d is rejected; the unit is told the reason."),
        "retried": _("Request %(id)d is being provisioned again."),
    }
    flash = ("success", messages[done] % {"id": id}) if done in messages else None
    return _page(request, session, token, user, flash=flash, page=max(page, 1))


@router.get("/queue/progress", response_class=HTMLResponse)
def progress(request: Request, session: SessionDep) -> Response:
    """The provisioning part of the queue alone: what the page's htmx refresh asks for."""
    current = _current(request, session)
    if current is None:
        return _to_login(request)
    token, user = current
    if user.role not in DECIDERS:
        return _not_a_decider(request, token, user, "approve")
    context = {
        **common.base(token, user, _("Approval queue"), "/queue"),
        "in_progress": _rows(session, user, _listed(session, user)[1])[0],
        "errors": {},
    }
    return _templates.TemplateResponse(request, "queue_progress.html", context)


def _beside(message: str, rule: str) -> str:
    return _("%(message)s (rule %(rule)s)") % {"message": message, "rule": rule}


def _shown(exc: errors.PortalError, action: str) -> tuple[str, str]:
    """(the field it is about or "", the message with its rule) of a service's refusal."""
    fields = exc.extra.get("fields") or []
    if fields:  # InvalidField: the field, its rule, both messages
        zh_text = exc.message_zh.split("：", 1)[-1]
        message = common.say(str(fields[0]["message"]), zh_text)
        return str(fields[0]["field"]), _beside(message, str(fields[0]["rule"]))
    if exc.extra.get("denials"):  # the policy layer: each rule with its reason
        parts = [
            _("Rule %(rule)s: %(reason)s")
            % {"rule": d["rule"], "reason": common.say(d["message_en"], d["message_zh"])}
            for d in exc.extra["denials"]
        ]
        return "", " ".join(parts)
    rule = str(exc.extra.get("rule") or f"request.{action}")
    return "", _("Rule %(rule)s: %(reason)s") % {"rule": rule, "reason": common.error_message(exc)}


_ACTIONS = {"approved": "approve", "rejected": "reject", "retried": "retry"}


async def _decide(request: Request, session: Session, request_id: int, kind: str) -> Response:
    """One decision through request.service (the API's own use cases: role, state, quota, audit,
    the provisioning task). A refusal is shown on the request it is about, the typed reason kept;
    nothing is written."""
    posted = await common.signed_form(_templates, request, session)
    if isinstance(posted, Response):
        return posted
    token, user, form = posted
    action = _ACTIONS[kind]
    if user.role not in DECIDERS:
        return _not_a_decider(request, token, user, action)
    actor, who = identity.actor_of(user), identity.who(user)
    # The queue's page the form was on: a refusal is shown there, beside the request, and the
    # operator goes back to it after a decision.
    try:
        page = max(int(str(form.get("page", "1"))), 1)
    except ValueError:
        page = 1
    typed = {k: str(form.get(k, "")).strip() for k in ("reason", "override_reason")}
    typed = {k: v for k, v in typed.items() if v}
    problem = next(
        (
            (k, _beside(_("At most %(n)d characters.") % {"n": MAX_REASON}, "max_length"))
            for k, v in typed.items()
            if len(v) > MAX_REASON
        ),
        None,
    )
    if kind == "rejected" and not typed.get("reason"):
        problem = ("reason", _beside(_("Give the reason; it is told to the unit."), "required"))
    if problem is not None:
        errs = {request_id: {problem[0]: problem[1]}}
        return _page(
            request, session, token, user, errs=errs, values={request_id: typed}, status=422, page=page
        )
    override = typed.get("override_reason") if user.role == Role.CENTER_ADMIN.value else None
    try:
        if kind == "approved":
            requests.approve(session, actor, who, request_id, override_reason=override)
        elif kind == "rejected":
            requests.reject(session, actor, who, request_id, typed["reason"])
        else:
            requests.retry(session, actor, who, request_id, override_reason=override)
    except errors.NotFound:
        session.rollback()
        message = _("There is no request %(id)d, or it is not yours to see") % {"id": request_id}
        return common.not_found(_templates, request, token, user, "/queue", message)
    except errors.PortalError as exc:
        session.rollback()  # nothing half-written
        field, message = _shown(exc, action)
        errs, values = {request_id: {field: message}}, {request_id: typed}
        return _page(request, session, token, user, errs=errs, values=values, status=exc.status, page=page)
    back = f"&page={page}" if page > 1 else ""
    return RedirectResponse(f"/queue?done={kind}&id={request_id}{back}", status_code=303)


@router.post("/queue/{request_id:int}/approve")
async def approve(request: Request, session: SessionDep, request_id: int) -> Response:
    return await _decide(request, session, request_id, "approved")


@router.post("/queue/{request_id:int}/reject")
async def reject(request: Request, session: SessionDep, request_id: int) -> Response:
    return await _decide(request, session, request_id, "rejected")


@router.post("/queue/{request_id:int}/retry")
async def retry(request: Request, session: SessionDep, request_id: int) -> Response:
    return await _decide(request, session, request_id, "retried")
