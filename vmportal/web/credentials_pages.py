"""The one-time credentials page (rule ``credentials_once``): /vms/{id}/credentials.

GET only reads (vmportal.vm.service.credentials.credentials_state: nothing written, no password
read out), so a link preview, a prefetch or a crawler cannot use the one fetch up. It says that the
credentials are shown once, and offers them behind a confirmation: a ticked "I am ready" box and a
POST carrying the CSRF token (the portal's dialog asks again where JavaScript runs). The POST is the
same use case as ``POST /api/v1/vms/{id}/credentials``: the password is erased in the transaction
that answers, and the answer (address, gateway, DNS, admin account, password, each with a copy
button) is sent with ``Cache-Control: no-store``. Afterwards, and for anyone else, the page shows
the rule and its reason in the user's language instead of the secret; another unit's VM answers
the 404 page.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from sqlmodel import Session

from policies.base import Deny
from vmportal.identity import service as identity
from vmportal.identity.models import User
from vmportal.kit import errors
from vmportal.kit.http import SessionDep
from vmportal.vm import service as vms
from vmportal.vm.schemas import CredentialsOut
from vmportal.vm.service import credentials
from vmportal.vm.service.credentials import CredentialsStatus
from vmportal.web import common, templating
from vmportal.web.i18n import gettext as _
from vmportal.web.session import current as _current
from vmportal.web.session import to_login as _to_login

router = APIRouter(include_in_schema=False)
_templates = templating.templates(Path(__file__).parent / "templates" / "unit")

#: Nothing on these pages may be kept by a browser or a proxy (the answer of the POST holds the
#: password; the others would show a stale state after the fetch).
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def _reason(rule: str, en: str, zh: str) -> str:
    return _("Rule %(rule)s: %(reason)s") % {"rule": rule, "reason": common.say(en, zh)}


def refusal_text(denial: Deny) -> str:
    """A refusal of the rule in the user's language, with the rule's id."""
    return _reason(denial.rule, denial.message_en, denial.message_zh)


def status_text(status: CredentialsStatus) -> str:
    return {
        CredentialsStatus.AVAILABLE: _("Waiting to be collected"),
        CredentialsStatus.FETCHED: _("Already collected"),
        CredentialsStatus.NOT_DELIVERED: _("Not delivered yet"),
        CredentialsStatus.INACTIVE: _("No longer available: the VM is not in service"),
    }[status]


def _context(session: Session, token: str, user: User, vm_id: int, **extra: Any) -> dict[str, Any]:
    actor = identity.actor_of(user)
    row = vms.get_vm(session, actor, vm_id)  # 404 for another unit's
    state = credentials.credentials_state(session, actor, vm_id)
    return {
        **common.base(token, user, _("Initial credentials of VM %(name)s") % {"name": row.vm.name}, "/vms"),
        "vm": row.vm,
        "state": state,
        "status_text": status_text(state.status),
        "refusal": refusal_text(state.refusal) if state.refusal else "",
        "credentials": None,
        "error": None,
        **extra,
    }


def _no_such_vm(request: Request, token: str, user: User, vm_id: int) -> Response:
    page = common.not_found(
        _templates,
        request,
        token,
        user,
        "/vms",
        _("There is no VM %(id)d, or it is not yours to see") % {"id": vm_id},
    )
    page.headers.update(NO_STORE)
    return page


def _render(request: Request, context: dict[str, Any], status: int = 200) -> Response:
    return _templates.TemplateResponse(
        request, "credentials.html", context, status_code=status, headers=NO_STORE
    )


@router.get("/vms/{vm_id:int}/credentials", response_class=HTMLResponse)
def credentials_page(request: Request, session: SessionDep, vm_id: int) -> Response:
    """The warning and the confirmation (when this user may collect them now), or why not."""
    current = _current(request, session)
    if current is None:
        return _to_login(request)
    token, user = current
    try:
        context = _context(session, token, user, vm_id)
    except errors.NotFound:
        return _no_such_vm(request, token, user, vm_id)
    return _render(request, context)


@router.post("/vms/{vm_id:int}/credentials", response_class=HTMLResponse)
async def collect_credentials(request: Request, session: SessionDep, vm_id: int) -> Response:
    """The one fetch, after the CSRF token and the ticked confirmation; the secret in the answer."""
    current = _current(request, session)
    if current is None:
        return _to_login(request)
    token, user = current
    form = await request.form()
    if (bad := common.csrf_refused(_templates, request, token, user, form)) is not None:
        bad.headers.update(NO_STORE)
        return bad
    try:
        if form.get("understood") != "1":  # nothing fetched: the box is the confirmation
            error = _("Tick the box to confirm that you are ready to store the credentials")
            return _render(request, _context(session, token, user, vm_id, error=error), status=422)
        answer: CredentialsOut = credentials.fetch_credentials(
            session, identity.actor_of(user), identity.who(user), vm_id
        )
    except errors.NotFound:
        session.rollback()
        return _no_such_vm(request, token, user, vm_id)
    except errors.PortalError as exc:  # already collected (410), not this user's (403), not active (409)
        session.rollback()
        rule = str(exc.extra.get("rule", exc.code))
        message = _("Rule %(rule)s: %(reason)s") % {"rule": rule, "reason": common.error_message(exc)}
        context = _context(session, token, user, vm_id, refusal=message)
        return _render(request, context, status=exc.status)
    context = _context(session, token, user, vm_id, credentials=answer)
    context["notice"] = common.say(answer.notice_en, answer.notice_zh)
    return _render(request, context)
