"""待确认: the unit lead's endorsements (/endorsements), where the center turns endorsement on.

The page lists the lead's unit's requests that wait for the lead (submitted; the service scopes the
list to the unit and says which actions the lead may take on each), with 确认 (endorse, after the
portal's confirmation dialog) and 不同意 (decline, with a reason told to the unit's admin). Both post
a form with its CSRF token to the request service's own use cases (vmportal.request.service endorse
and decline: the role, the unit, the state and the center's setting, audited); a refusal is shown on
the request it is about, the typed reason kept, nothing written. While the center does not require
endorsement the page says so and offers nothing. Other roles are refused naming the rule.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlmodel import Session

from policies.roles import Role
from vmportal.center import service as center
from vmportal.identity import service as identity
from vmportal.identity.models import User
from vmportal.kit import errors
from vmportal.kit.http import SessionDep
from vmportal.request import service as requests
from vmportal.request.models import RequestState
from vmportal.web import common, request_pages, templating
from vmportal.web.i18n import gettext as _
from vmportal.web.pages import _current, _to_login

router = APIRouter(include_in_schema=False)
_templates = templating.templates(Path(__file__).parent / "templates" / "unit")

URL = "/endorsements"
#: A reason typed into the decline form (the service keeps 2,000 characters).
MAX_REASON = 2000
#: The most requests listed at once (a unit files a handful a term).
LIMIT = 200


def _rule_text(rule: str, reason: str) -> str:
    return _("Rule %(rule)s: %(reason)s") % {"rule": rule, "reason": reason}


def _beside(message: str, rule: str) -> str:
    return _("%(message)s (rule %(rule)s)") % {"message": message, "rule": rule}


def _not_the_lead(request: Request, token: str, user: User, action: str) -> Response:
    message = _rule_text(
        f"request.{action}", _("only the unit's security lead endorses or declines the unit's requests")
    )
    return common.refused(_templates, request, token, user, URL, message)


def _page(
    request: Request,
    session: Session,
    token: str,
    user: User,
    *,
    status: int = 200,
    flash: tuple[str, str] | None = None,
    errs: dict[int, dict[str, str]] | None = None,
    values: dict[int, dict[str, str]] | None = None,
) -> Response:
    actor = identity.actor_of(user)
    waiting, _total = requests.list_requests(
        session, actor, state=RequestState.SUBMITTED, limit=LIMIT, sort="due_at"
    )
    actions = requests.actions_for(session, actor, waiting)
    now = datetime.now(UTC)
    rows = [{**request_pages._row(r, now), "actions": a} for r, a in zip(waiting, actions, strict=True)]
    listed = {r.id for r in waiting}
    flashes = [flash] if flash else []
    # A refusal about a request no longer waiting (decided meanwhile) has no place beside it.
    for rid, problems in (errs or {}).items():
        if rid not in listed:
            flashes += [
                ("error", _("Request %(id)d: %(problem)s") % {"id": rid, "problem": p})
                for p in problems.values()
            ]
    context: dict[str, Any] = {
        **common.base(token, user, _("Awaiting my endorsement"), URL),
        "required": center.endorsement_required(session),
        "rows": rows,
        "errors": errs or {},
        "values": values or {},
        "flashes": flashes,
        "max_reason": MAX_REASON,
    }
    return _templates.TemplateResponse(request, "endorsements.html", context, status_code=status)


@router.get(URL, response_class=HTMLResponse)
def endorsements(request: Request, session: SessionDep, done: str = "", id: int = 0) -> Response:
    current = _current(request, session)
    if current is None:
        return _to_login(request)
    token, user = current
    if user.role != Role.UNIT_LEAD.value:
        return _not_the_lead(request, token, user, "endorse")
    messages = {
        "endorsed": _("Request %(id)d is endorsed; it now waits for the center's decision."),
        "declined": _("Request %(id)d is declined; the unit's admin is told the reason."),
    }
    flash = ("success", messages[done] % {"id": id}) if done in messages else None
    return _page(request, session, token, user, flash=flash)


def _shown(exc: errors.PortalError, action: str) -> tuple[str, str]:
    """(the field it is about or "", the message with its rule) of the service's refusal."""
    fields = exc.extra.get("fields") or []
    if fields:
        zh_text = exc.message_zh.split("：", 1)[-1]
        message = common.say(str(fields[0]["message"]), zh_text)
        return str(fields[0]["field"]), _beside(message, str(fields[0]["rule"]))
    rule = str(exc.extra.get("rule") or f"request.{action}")
    return "", _rule_text(rule, common.error_message(exc))


async def _decide(request: Request, session: Session, request_id: int, action: str) -> Response:
    current = _current(request, session)
    if current is None:
        return _to_login(request)
    token, user = current
    form = await request.form()
    if (bad := common.csrf_refused(_templates, request, token, user, form)) is not None:
        return bad
    if user.role != Role.UNIT_LEAD.value:
        return _not_the_lead(request, token, user, action)
    actor, who = identity.actor_of(user), identity.who(user)
    reason = str(form.get("reason", "")).strip()
    problem: tuple[str, str] | None = None
    status = 422
    if action == "decline" and not reason:
        problem = ("reason", _beside(_("Give the reason; it is told to the unit's admin."), "required"))
    elif len(reason) > MAX_REASON:
        problem = ("reason", _beside(_("At most %(n)d characters.") % {"n": MAX_REASON}, "max_length"))
    if problem is None:
        try:
            if action == "endorse":
                requests.endorse(session, actor, who, request_id)
            else:
                requests.decline(session, actor, who, request_id, reason)
        except errors.NotFound:
            session.rollback()
            message = _("There is no request %(id)d, or it is not yours to see") % {"id": request_id}
            return common.not_found(_templates, request, token, user, URL, message)
        except errors.PortalError as exc:
            session.rollback()
            problem, status = _shown(exc, action), exc.status
    if problem is not None:
        field, message = problem
        return _page(
            request,
            session,
            token,
            user,
            status=status,
            errs={request_id: {field: message}},
            values={request_id: {"reason": reason}},
        )
    done = "endorsed" if action == "endorse" else "declined"
    return RedirectResponse(f"{URL}?done={done}&id={request_id}", status_code=303)


@router.post(URL + "/{request_id:int}/endorse")
async def endorse(request: Request, session: SessionDep, request_id: int) -> Response:
    return await _decide(request, session, request_id, "endorse")


@router.post(URL + "/{request_id:int}/decline")
async def decline(request: Request, session: SessionDep, request_id: int) -> Response:
    return await _decide(request, session, request_id, "decline")
