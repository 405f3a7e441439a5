"""待确认: the unit lead's endorsements (/endorsements), where the center turns endorsement on.

The page lists the lead's unit's requests that wait for the lead (submitted; the service scopes the
list to the unit and says which actions the lead may take on each), with 确认 (endorse, after the
portal's confirmation dialog) and 不同意 (decline, with a reason told to the unit's admin). Both post
a form with its CSRF token to the request service's own use cases (vmportal.request.service endorse
and decline: the role, the unit, the state and the center's setting, audited); a refusal is shown on
the request it is about, the typed reason kept, nothing written. While the center does not require
endorsement the page says so and offers nothing. Other roles are refused naming the rule.

签署材料: the lead files the unit's signed commitment letter / VM agreement scans (/unit/documents);
the center's staff file them for a unit from its administration page
(/admin/units/{id}/documents), as a unit often hands the paper in at the counter. Both go through
unit.service.file_document (its audit row names who filed it and, for the center, for which unit).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlmodel import Session
from starlette.datastructures import UploadFile as StarletteUploadFile

from policies.roles import Role
from vmportal.center import service as center
from vmportal.identity import service as identity
from vmportal.identity.models import User
from vmportal.kit import errors
from vmportal.kit.http import SessionDep
from vmportal.kit.settings import get_settings
from vmportal.paperwork import service as paperwork
from vmportal.paperwork.models import GeneratedPaper
from vmportal.request import service as requests
from vmportal.request.models import RequestState
from vmportal.unit import service as units
from vmportal.unit.models import DocumentKind, Unit
from vmportal.unit.schemas import DocumentForm
from vmportal.web import common, formats, request_pages, templating
from vmportal.web.i18n import gettext as _
from vmportal.web.session import current as _current
from vmportal.web.session import to_login as _to_login

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
    posted = await common.signed_form(_templates, request, session)
    if isinstance(posted, Response):
        return posted
    token, user, form = posted
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


# ---- 签署材料: the lead files the signed commitment letter or VM agreement -------------------------

DOCUMENTS_URL = "/unit/documents"
#: The center files a unit's papers from the unit's administration page (handed in at the counter).
CENTER_DOCUMENTS_URL = "/admin/units/{unit_id}/documents"
#: Who files for a unit from that page (unit.service.ensure_may_file_documents: the center's staff).
CENTER_FILERS = frozenset({Role.CENTER_ADMIN.value, Role.CENTER_OPERATOR.value})
_DOCUMENT_FIELDS = ("kind", "signer", "signed_on", "original", "file")


def _document_kinds() -> list[tuple[str, str]]:
    return [
        (DocumentKind.COMMITMENT_LETTER.value, _("Security commitment letter (网络安全承诺书)")),
        (DocumentKind.VM_AGREEMENT.value, _("VM service agreement (虚拟机服务协议书)")),
    ]


def _field_problem(field: str) -> str:
    return {
        "kind": _("Choose which paper this is."),
        "signer": _("Give the name of who signed it (at most 100 characters)."),
        "signed_on": _("Give the date it was signed, as on the paper (YYYY-MM-DD)."),
        "file": _("Choose the scan to upload (PDF, PNG or JPEG)."),
        "original": _("Choose one of the generated papers listed, or none."),
    }.get(field, _("Check this field."))


@dataclass(frozen=True)
class _Where:
    """Whose papers a documents page files, and where its links go: the lead's own unit
    (/unit/documents), or any unit from the center's page of it (/admin/units/{id}/documents, the
    paper handed in at the counter)."""

    unit: Unit
    url: str
    back_url: str
    active: str
    for_center: bool


def _where(unit: Unit, *, for_center: bool) -> _Where:
    if for_center:
        url = CENTER_DOCUMENTS_URL.format(unit_id=unit.id)
        return _Where(unit, url, f"/admin/units/{unit.id}", "/admin/units", True)
    return _Where(unit, DOCUMENTS_URL, "/unit", "/unit", False)


def _unit_name(unit: Unit) -> str:
    return unit.name_zh if common.zh() or not unit.name_en else unit.name_en


def _documents_page(
    request: Request,
    session: Session,
    token: str,
    user: User,
    where: _Where,
    *,
    status: int = 200,
    flash: tuple[str, str] | None = None,
    errs: dict[str, str] | None = None,
    values: dict[str, str] | None = None,
) -> Response:
    assert where.unit.id is not None
    names = dict(_document_kinds())
    title = (
        _("File signed papers for %(unit)s") % {"unit": _unit_name(where.unit)}
        if where.for_center
        else _("File signed papers")
    )
    context: dict[str, Any] = {
        **common.base(token, user, title, where.active),
        "kinds": _document_kinds(),
        "documents": [
            {"doc": d, "kind": names.get(d.kind, d.kind)}
            for d in units.list_documents(session, where.unit.id, include_superseded=False)
        ],
        "errors": errs or {},
        "values": values or {},
        "flashes": [flash] if flash else [],
        "max_bytes": get_settings().upload_max_bytes,
        "originals": _originals(session, where.unit.id),
        "form_action": where.url,
        "back_url": where.back_url,
        "for_center": where.for_center,
        "unit_name": _unit_name(where.unit),
    }
    return _templates.TemplateResponse(request, "documents.html", context, status_code=status)


def _originals(session: Session, unit_id: int) -> list[tuple[str, str]]:
    """The unit's generated papers (附件2 / 附件3 PDFs) still waiting for their signed scan, as
    (footer id, label) choices: a scan filed for one is linked to it (paperwork.file_signed)."""
    names = dict(_document_kinds())
    return [
        (
            p.document_id,
            _("%(kind)s, document %(id)s (SHA-256 %(digest)s…), generated %(on)s")
            % {
                "kind": names.get(p.kind, p.kind),
                "id": p.document_id,
                "digest": p.sha256[:12],
                "on": formats.local_date(p.generated_at),
            },
        )
        for p in paperwork.list_papers(session, unit_id)
        if p.signed_document_id is None
    ]


def _may_file(user: User, unit_id: int | None) -> str:
    """Why ``user`` may not file the signed papers of unit ``unit_id`` ('' when they may)."""
    if unit_id is None:
        return _(
            "This page files the signed papers of your own unit; the center files them on a unit's page."
        )
    try:
        units.ensure_may_file_documents(identity.actor_of(user), unit_id)
    except errors.Forbidden:
        return _rule_text(
            "paperwork.file_signed",
            _("the unit's security lead, who signs the papers, files their scans"),
        )
    return ""


def _own_unit(request: Request, session: Session, token: str, user: User) -> _Where | Response:
    if why := _may_file(user, user.unit_id):
        return common.refused(_templates, request, token, user, "/unit", why)
    assert user.unit_id is not None
    return _where(units.get_unit(session, user.unit_id), for_center=False)


def _center_unit(
    request: Request, session: Session, token: str, user: User, unit_id: int
) -> _Where | Response:
    """The unit of the center's page; a unit's own user is refused naming the rule (not 404: the
    address says nothing they do not know), a unit that does not exist answers the 404 page."""
    if user.role not in CENTER_FILERS:
        why = _rule_text("paperwork.file_signed", _("the center's staff file a unit's papers from its page"))
        return common.refused(_templates, request, token, user, "/admin/units", why)
    try:
        unit = units.visible_unit(session, identity.actor_of(user), unit_id)
    except errors.NotFound:
        message = _("There is no unit %(id)d, or it is not yours to see") % {"id": unit_id}
        return common.not_found(_templates, request, token, user, "/admin/units", message)
    if why := _may_file(user, unit_id):
        return common.refused(_templates, request, token, user, "/admin/units", why)
    return _where(unit, for_center=True)


def _original(session: Session, unit_id: int, ref: str) -> GeneratedPaper | None:
    """The unit's generated paper ``ref`` (its footer id) still awaiting its scan, if it is one."""
    if not ref:
        return None
    try:
        paper = paperwork.find(session, unit_id, ref)
    except errors.NotFound:
        return None
    return paper if paper.signed_document_id is None else None


def _filed_flash(done: str) -> tuple[str, str] | None:
    return ("success", _("The signed paper is filed.")) if done == "filed" else None


@router.get(DOCUMENTS_URL, response_class=HTMLResponse)
def documents(request: Request, session: SessionDep, done: str = "") -> Response:
    current = _current(request, session)
    if current is None:
        return _to_login(request)
    token, user = current
    where = _own_unit(request, session, token, user)
    if isinstance(where, Response):
        return where
    return _documents_page(request, session, token, user, where, flash=_filed_flash(done))


@router.get(CENTER_DOCUMENTS_URL.replace("{unit_id}", "{unit_id:int}"), response_class=HTMLResponse)
def center_documents(request: Request, session: SessionDep, unit_id: int, done: str = "") -> Response:
    current = _current(request, session)
    if current is None:
        return _to_login(request)
    token, user = current
    where = _center_unit(request, session, token, user, unit_id)
    if isinstance(where, Response):
        return where
    return _documents_page(request, session, token, user, where, flash=_filed_flash(done))


@router.post(DOCUMENTS_URL)
async def file_document(request: Request, session: SessionDep) -> Response:
    return await _file(request, session, None)


@router.post(CENTER_DOCUMENTS_URL.replace("{unit_id}", "{unit_id:int}"))
async def center_file_document(request: Request, session: SessionDep, unit_id: int) -> Response:
    return await _file(request, session, unit_id)


async def _file(request: Request, session: Session, unit_id: int | None) -> Response:
    """A multipart form (kind, signer, signed_on, file) into unit.service.file_document, for the
    lead's own unit (``unit_id`` None) or, from the center's page, for unit ``unit_id``: the file's
    type proven by its first bytes, its size limited, the date checked; an error beside its field,
    the typed values kept, nothing written."""
    current = _current(request, session)
    if current is None:
        return _to_login(request)
    token, user = current
    settings = get_settings()
    form = await request.form(max_files=1, max_fields=10)
    try:
        if (bad := common.csrf_refused(_templates, request, token, user, form)) is not None:
            return bad
        where = (
            _own_unit(request, session, token, user)
            if unit_id is None
            else _center_unit(request, session, token, user, unit_id)
        )
        if isinstance(where, Response):
            return where
        assert where.unit.id is not None
        target = where.unit.id
        typed = {k: str(form.get(k, "")).strip() for k in ("kind", "signer", "signed_on", "original")}
        errs: dict[str, str] = {}
        try:
            fields = DocumentForm.model_validate({k: v for k, v in typed.items() if v and k != "original"})
        except ValidationError as exc:
            for e in exc.errors(include_url=False, include_input=False):
                field = str(e["loc"][0]) if e["loc"] else ""
                errs.setdefault(field, _beside(_field_problem(field), str(e["type"])))
        original = _original(session, target, typed["original"])
        if typed["original"] and original is None:
            errs["original"] = _beside(_field_problem("original"), "choice")
        elif original is not None and "kind" not in errs and original.kind != typed["kind"]:
            errs["original"] = _beside(
                _("The generated paper chosen is not the kind of paper chosen above."), "same_kind"
            )
        upload = form.get("file")
        if not isinstance(upload, StarletteUploadFile) or not upload.filename:
            errs.setdefault("file", _beside(_field_problem("file"), "required"))
        if errs:
            return _documents_page(request, session, token, user, where, status=422, errs=errs, values=typed)
        assert isinstance(upload, StarletteUploadFile)
        who = identity.who(user)

        def file_it() -> None:
            if original is not None:  # filed for the generated paper, and linked to it
                paperwork.file_signed(
                    session,
                    who,
                    target,
                    original.document_id,
                    signer=fields.signer,
                    signed_on=fields.signed_on,
                    filename=upload.filename,
                    content_type=upload.content_type or "",
                    stream=upload.file,
                    settings=settings,
                )
                return
            units.file_document(
                session,
                who,
                target,
                kind=fields.kind,
                signer=fields.signer,
                signed_on=fields.signed_on,
                filename=upload.filename,
                content_type=upload.content_type or "",
                stream=upload.file,
                settings=settings,
            )

        try:
            await run_in_threadpool(file_it)
        except errors.PortalError as exc:
            session.rollback()
            listed = exc.extra.get("fields") or []
            field = str(listed[0]["field"]) if listed else str(exc.extra.get("field") or "file")
            rule = str(listed[0]["rule"]) if listed else str(exc.extra.get("rule") or exc.code)
            message = common.error_message(exc)
            message = message.split("：", 1)[-1] if common.zh() else message.split(": ", 1)[-1]
            errs = {field if field in _DOCUMENT_FIELDS else "file": _beside(message, rule)}
            return _documents_page(
                request, session, token, user, where, status=exc.status, errs=errs, values=typed
            )
    finally:
        await form.close()
    return RedirectResponse(f"{where.url}?done=filed", status_code=303)
