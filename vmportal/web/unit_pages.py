"""单位信息: a unit's paperwork status in words, its contact registry and its information systems
(/unit: the user's own unit; /unit/{id}: any unit for the center's roles, the 404 page for another
unit's users).

The page reads through the unit service only (paperwork status, registry rows, documents on file,
systems) and the VM service (how many VMs each system has); it changes nothing. The mobile numbers
are masked as the API masks them (kit.scope.shows_personal_data: in clear for the center admin
only); the ID numbers are not shown at all, only whether they are on file. The unit's own users
read it; the edits the API offers (the registry and documents for the lead, the systems for both)
have no page yet and are not offered here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from sqlmodel import Session

from policies.roles import Actor
from vmportal.identity import service as identity
from vmportal.identity.models import User
from vmportal.kit import crypto, errors
from vmportal.kit.http import SessionDep
from vmportal.kit.scope import sees_every_unit, shows_personal_data
from vmportal.unit import service as units
from vmportal.unit.models import Contact, ContactRole, DocumentKind, Unit
from vmportal.vm import service as vms
from vmportal.web import common, templating
from vmportal.web.i18n import N_
from vmportal.web.i18n import gettext as _
from vmportal.web.session import current as _current
from vmportal.web.session import to_login as _to_login

router = APIRouter(include_in_schema=False)
_templates = templating.templates(Path(__file__).parent / "templates" / "unit")

#: The VMs of a unit are counted per system a page of this many at a time.
_VM_PAGE = 500

_ROLE_NAMES = {
    ContactRole.SECURITY_LEAD: N_("Security lead"),
    ContactRole.SECURITY_ADMIN: N_("Security administrator"),
}
_FIELD_NAMES = {
    "name": N_("name"),
    "title": N_("title"),
    "office_phone": N_("office phone"),
    "mobile": N_("mobile phone"),
    "email": N_("e-mail"),
    "qq": N_("QQ"),
    "staff_no": N_("staff number"),
    "national_id": N_("national ID number"),
}
_DOCUMENT_NAMES = {
    DocumentKind.COMMITMENT_LETTER: N_("The signed security commitment letter"),
    DocumentKind.VM_AGREEMENT: N_("The signed VM service agreement"),
}
_PURPOSES = {"teaching": N_("Teaching"), "research": N_("Research"), "management": N_("Management")}


def _missing_in_words(missing: list[str]) -> list[str]:
    """Each gap of the paperwork as a sentence: the registry's rows field by field, then the papers."""
    out: list[str] = []
    for role in ContactRole:
        fields = [m.split(".", 1)[1] for m in missing if m.startswith(role.value + ".")]
        if fields:
            out.append(
                _("Contact registry, %(role)s: %(fields)s")
                % {
                    "role": _(_ROLE_NAMES[role]),
                    "fields": ("、" if common.zh() else ", ").join(_(_FIELD_NAMES.get(f, f)) for f in fields),
                }
            )
    for kind in DocumentKind:
        if kind.value in missing:
            out.append(_(_DOCUMENT_NAMES[kind]))
    return out


def _contact_row(contact: Contact | None, role: ContactRole, actor: Actor) -> dict[str, Any]:
    clear = shows_personal_data(actor)
    if contact is None:
        return {"role": _(_ROLE_NAMES[role]), "contact": None}
    return {
        "role": _(_ROLE_NAMES[role]),
        "contact": contact,
        "mobile": (contact.mobile if clear else crypto.mask(contact.mobile)) or "",
        "masked": not clear,
        "national_id_on_file": bool(contact.national_id),
    }


def _vm_counts(session: Session, actor: Actor, unit_id: int) -> dict[int | None, int]:
    counts: dict[int | None, int] = {}
    offset = 0
    while True:
        rows, total = vms.list_vms(
            session, actor, vms.VMFilters(unit_id=unit_id, limit=_VM_PAGE, offset=offset)
        )
        for row in rows:
            counts[row.vm.system_id] = counts.get(row.vm.system_id, 0) + 1
        offset += len(rows)
        if not rows or offset >= total:
            return counts


def _context(session: Session, token: str, user: User, unit: Unit) -> dict[str, Any]:
    actor = identity.actor_of(user)
    assert unit.id is not None
    status = units.paperwork_status(session, unit.id)
    contacts = {c.role: c for c in units.list_contacts(session, unit.id)}
    documents = units.list_documents(session, unit.id, include_superseded=False)
    counts = _vm_counts(session, actor, unit.id)
    name = unit.name_zh if common.zh() or not unit.name_en else unit.name_en
    return {
        **common.base(token, user, _("Unit information: %(name)s") % {"name": name}, "/unit"),
        "unit": unit,
        "unit_name": name,
        "complete": status.complete,
        "missing": _missing_in_words(status.missing),
        "missing_keys": status.missing,
        "verdict": common.say(status.message_en, status.message_zh),
        "agreement_filed_at": status.agreement_filed_at,
        "documents": [
            {"doc": d, "kind": _(_DOCUMENT_NAMES[DocumentKind(d.kind)])}
            for d in documents
            if d.kind in set(DocumentKind)
        ],
        "contacts": [_contact_row(contacts.get(role.value), role, actor) for role in ContactRole],
        "systems": [
            {
                "s": s,
                "purpose": _(_PURPOSES[s.purpose]) if s.purpose in _PURPOSES else s.purpose,
                "vms": counts.get(s.id, 0),
            }
            for s in units.list_systems(session, unit.id)
        ],
        "center": sees_every_unit(actor.role),
        # The unit's lead files the signed scans on their own page (vmportal/web/lead_pages.py).
        "may_file": user.unit_id == unit.id and _may_file(actor, unit.id),
    }


def _may_file(actor: Actor, unit_id: int) -> bool:
    try:
        units.ensure_may_file_documents(actor, unit_id)
    except errors.Forbidden:
        return False
    return True


def _no_such_unit(request: Request, token: str, user: User, unit_id: int) -> Response:
    return common.not_found(
        _templates,
        request,
        token,
        user,
        "/unit",
        _("There is no unit %(id)d, or it is not yours to see") % {"id": unit_id},
    )


@router.get("/unit", response_class=HTMLResponse)
def my_unit(request: Request, session: SessionDep) -> Response:
    """A unit's user: their unit's page. The center's roles: the units, each linking to its page."""
    current = _current(request, session)
    if current is None:
        return _to_login(request)
    token, user = current
    actor = identity.actor_of(user)
    if user.unit_id is not None and not sees_every_unit(actor.role):
        try:
            unit = units.visible_unit(session, actor, user.unit_id)
        except errors.NotFound:
            return _no_such_unit(request, token, user, user.unit_id)
        return _templates.TemplateResponse(request, "unit_info.html", _context(session, token, user, unit))
    if not sees_every_unit(actor.role):  # a unit role without a unit: nothing to show
        return _no_such_unit(request, token, user, 0)
    context = {
        **common.base(token, user, _("Units"), "/unit"),
        "units": units.list_units(session, actor),
        "zh": common.zh(),
    }
    return _templates.TemplateResponse(request, "unit_list.html", context)


@router.get("/unit/{unit_id:int}", response_class=HTMLResponse)
def unit_info(request: Request, session: SessionDep, unit_id: int) -> Response:
    current = _current(request, session)
    if current is None:
        return _to_login(request)
    token, user = current
    actor = identity.actor_of(user)
    try:
        unit = units.visible_unit(session, actor, unit_id)  # 404 for another unit's
    except errors.NotFound:
        return _no_such_unit(request, token, user, unit_id)
    return _templates.TemplateResponse(request, "unit_info.html", _context(session, token, user, unit))
