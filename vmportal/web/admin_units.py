"""单位管理: the center administrator's units (/admin/units, sortable, filterable, paged) and a unit's
page (/admin/units/{id}): its contact registry with the accounts made from it, the button that makes
the missing ones (unit.accounts.create_unit_accounts, as POST /api/v1/units/{id}/accounts: the
security admin becomes the unit_admin, the security lead the unit_lead; the initial passwords are
shown once on the answer, which no cache keeps), and the unit's quota with its use (unit.service
set_quota, as PUT /api/v1/units/{id}/quota; the same bounds as the API's QuotaIn), and the link to
file the unit's signed papers for it (/admin/units/{id}/documents, vmportal/web/lead_pages.py).

The center's operators and the auditor read both pages; only the center administrator acts, anyone
else is refused naming the rule. Bad input and the service's refusals are shown beside their field
with the rule, the typed values kept, nothing written.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlmodel import Session

from vmportal.identity import service as identity
from vmportal.identity.models import User
from vmportal.kit import errors
from vmportal.kit.http import SessionDep
from vmportal.quota import service as quotas
from vmportal.unit import accounts
from vmportal.unit import service as units
from vmportal.unit.models import ContactRole, Unit
from vmportal.unit.schemas import MAX_DISK_GIB, MAX_MEMORY_GIB, MAX_VCPUS, MAX_VMS
from vmportal.web import common
from vmportal.web.admin_common import (
    ADMINS,
    READERS,
    listing,
    refused,
    role_name,
    shown,
    templates,
    with_rule,
)
from vmportal.web.i18n import N_
from vmportal.web.i18n import gettext as _
from vmportal.web.session import current as _current
from vmportal.web.session import to_login as _to_login

router = APIRouter(include_in_schema=False)

ACTIVE = "/admin/units"
#: The quota's fields, their bounds (unit.schemas.QuotaIn) and labels.
QUOTA_FIELDS: dict[str, tuple[int, str]] = {
    "max_vms": (MAX_VMS, N_("VMs")),
    "max_vcpus": (MAX_VCPUS, N_("vCPUs")),
    "max_memory_gib": (MAX_MEMORY_GIB, N_("Memory (GiB)")),
    "max_disk_gib": (MAX_DISK_GIB, N_("Disk (GiB)")),
}
_USED = {"max_vms": "vms", "max_vcpus": "vcpus", "max_memory_gib": "memory_gib", "max_disk_gib": "disk_gib"}
_CONTACT_NAMES = {
    ContactRole.SECURITY_ADMIN: N_("Security administrator"),
    ContactRole.SECURITY_LEAD: N_("Security lead"),
}
_ACCOUNT_ROLES = {ContactRole.SECURITY_ADMIN: N_("unit admin"), ContactRole.SECURITY_LEAD: N_("unit lead")}


def _name(unit: Unit) -> str:
    return unit.name_zh if common.zh() or not unit.name_en else unit.name_en


def _reasons() -> dict[str, str]:
    return {
        "read": _("only the center's staff and the auditor see the units' administration"),
        "accounts": _("only the center administrator creates the accounts of a unit"),
        "quota": _("only the center administrator changes a unit's quota"),
    }


def _refuse(request: Request, token: str, user: User, action: str) -> Response:
    rule = {"read": "unit.read", "accounts": "unit.accounts", "quota": "quota.update"}[action]
    return refused(request, token, user, ACTIVE, rule, _reasons()[action])


def _no_unit(request: Request, token: str, user: User, unit_id: int) -> Response:
    message = _("There is no unit %(id)d, or it is not yours to see") % {"id": unit_id}
    return common.not_found(templates, request, token, user, ACTIVE, message)


@router.get("/admin/units", response_class=HTMLResponse)
def unit_list(
    request: Request,
    session: SessionDep,
    q: str = "",
    state: str = "",
    sort: str = "code",
    order: str = "asc",
    page: int = 1,
) -> Response:
    current = _current(request, session)
    if current is None:
        return _to_login(request)
    token, user = current
    if user.role not in READERS:
        return _refuse(request, token, user, "read")
    q = q.strip()[:100]
    state = state if state in ("active", "inactive") else ""
    needle = q.casefold()

    def keep(u: Unit) -> bool:
        if state and u.active != (state == "active"):
            return False
        return not needle or any(needle in t.casefold() for t in (u.code, u.name_zh, u.name_en))

    found = listing(
        units.list_units(session, identity.actor_of(user)),
        {
            "code": lambda u: u.code.casefold(),
            "name": lambda u: _name(u).casefold(),
            "state": lambda u: not u.active,
        },
        sort=sort,
        order=order,
        page=page,
        default="code",
        keep=keep,
    )
    rows = []
    for u in found.rows:
        assert u.id is not None
        rows.append({"unit": u, "name": _name(u), "quota": units.get_quota(session, u.id)})
    context = {
        **common.base(token, user, _("Units"), ACTIVE),
        "rows": rows,
        "listing": found,
        "filters": {"q": q, "state": state},
    }
    return templates.TemplateResponse(request, "units.html", context)


def _contacts(session: Session, unit_id: int) -> list[dict[str, Any]]:
    registry = {c.role: c for c in units.list_contacts(session, unit_id)}
    rows = []
    for role in (ContactRole.SECURITY_ADMIN, ContactRole.SECURITY_LEAD):
        contact = registry.get(role.value)
        account = identity.active_user_of_contact(session, contact.id) if contact and contact.id else None
        rows.append(
            {
                "role": role.value,
                "role_name": _(_CONTACT_NAMES[role]),
                "account_role": _(_ACCOUNT_ROLES[role]),
                "contact": contact,
                "account": account,
            }
        )
    return rows


def _unit_page(
    request: Request,
    session: Session,
    token: str,
    user: User,
    unit: Unit,
    *,
    errs: dict[str, str] | None = None,
    values: dict[str, str] | None = None,
    created: list[accounts.CreatedAccount] | None = None,
    flash: tuple[str, str] | None = None,
    status: int = 200,
) -> Response:
    assert unit.id is not None
    quota = units.get_quota(session, unit.id)
    used = quotas.used_of(session, unit.id)
    contacts = _contacts(session, unit.id)
    missing = [c for c in contacts if c["contact"] is not None and c["account"] is None]
    if user.role not in ADMINS:
        accounts_why_not = _("Only the center administrator creates the accounts of a unit.")
    elif not missing:
        accounts_why_not = _(
            "Every contact recorded in the registry has an active account; record a contact first."
        )
    else:
        accounts_why_not = ""
    stored = {f: str(getattr(quota, f)) for f in QUOTA_FIELDS}
    flashes = [flash] if flash else []
    if errs and "" in errs:
        flashes.append(("error", errs[""]))
    context = {
        **common.base(token, user, _("Unit administration: %(name)s") % {"name": _name(unit)}, ACTIVE),
        "unit": unit,
        "contacts": contacts,
        "missing": missing,
        "accounts_why_not": accounts_why_not,
        "users": identity.list_users(session, unit_id=unit.id, limit=100),
        "role_name": role_name,
        "quota_fields": [(f, _(label), bound) for f, (bound, label) in QUOTA_FIELDS.items()],
        "used": {f: getattr(used, _USED[f]) for f in QUOTA_FIELDS},
        "quota": quota,
        "values": {**stored, **(values or {})},
        "errors": {k: v for k, v in (errs or {}).items() if k},
        "quota_labels": {f: _(label) for f, (_bound, label) in QUOTA_FIELDS.items()},
        "may_act": user.role in ADMINS,
        # The counter's filing (vmportal/web/lead_pages.py): the rule of unit.service, asked beforehand.
        "may_file_documents": _may_file_documents(user, unit.id),
        "quota_why_not": _("Only the center administrator changes a unit's quota."),
        "created": [{"c": c, "role_name": _(_CONTACT_NAMES[c.contact_role])} for c in (created or [])],
        "flashes": flashes,
    }
    response = templates.TemplateResponse(request, "unit.html", context, status_code=status)
    if created:
        response.headers["Cache-Control"] = "no-store"  # the answer carries initial passwords
    return response


def _may_file_documents(user: User, unit_id: int) -> bool:
    try:
        units.ensure_may_file_documents(identity.actor_of(user), unit_id)
    except errors.Forbidden:
        return False
    return True


def _load(request: Request, session: Session, token: str, user: User, unit_id: int) -> Unit | Response:
    try:
        return units.visible_unit(session, identity.actor_of(user), unit_id)
    except errors.NotFound:
        return _no_unit(request, token, user, unit_id)


@router.get("/admin/units/{unit_id:int}", response_class=HTMLResponse)
def unit_page(request: Request, session: SessionDep, unit_id: int, done: str = "") -> Response:
    current = _current(request, session)
    if current is None:
        return _to_login(request)
    token, user = current
    if user.role not in READERS:
        return _refuse(request, token, user, "read")
    unit = _load(request, session, token, user, unit_id)
    if isinstance(unit, Response):
        return unit
    flash = ("success", _("The unit's quota is saved.")) if done == "quota" else None
    return _unit_page(request, session, token, user, unit, flash=flash)


@router.post("/admin/units/{unit_id:int}/accounts")
async def create_accounts(request: Request, session: SessionDep, unit_id: int) -> Response:
    """The accounts of the registry's contacts that have none yet; the passwords shown once."""
    posted = await common.signed_form(templates, request, session)
    if isinstance(posted, Response):
        return posted
    token, user, _form = posted
    if user.role not in ADMINS:
        return _refuse(request, token, user, "accounts")
    unit = _load(request, session, token, user, unit_id)
    if isinstance(unit, Response):
        return unit
    contacts = _contacts(session, unit_id)
    wanted = [ContactRole(c["role"]) for c in contacts if c["contact"] is not None and c["account"] is None]
    if not wanted:  # nothing to make: the rule of the service, said at the top
        wanted = [ContactRole(c["role"]) for c in contacts if c["account"] is None] or [
            ContactRole.SECURITY_ADMIN
        ]
    try:
        created = accounts.create_unit_accounts(
            session, identity.who(user), unit, [(role, None) for role in wanted]
        )
    except errors.PortalError as exc:
        session.rollback()  # both accounts or neither
        problem = next(iter(shown(exc).values()))
        message = _("The accounts were not created: %(reason)s") % {"reason": problem}
        return _unit_page(request, session, token, user, unit, errs={"": message}, status=exc.status)
    flash = (
        "warning",
        _(
            "The accounts are created. Their initial passwords are shown on this page only, now: "
            "hand each to its owner, who changes it at the first log-in."
        ),
    )
    return _unit_page(request, session, token, user, unit, created=created, flash=flash, status=201)


@router.post("/admin/units/{unit_id:int}/quota")
async def save_quota(request: Request, session: SessionDep, unit_id: int) -> Response:
    posted = await common.signed_form(templates, request, session)
    if isinstance(posted, Response):
        return posted
    token, user, form = posted
    if user.role not in ADMINS:
        return _refuse(request, token, user, "quota")
    unit = _load(request, session, token, user, unit_id)
    if isinstance(unit, Response):
        return unit
    typed = {f: str(form.get(f, "")).strip()[:16] for f in QUOTA_FIELDS}
    problems: dict[str, str] = {}
    wanted: dict[str, int] = {}
    for field, (bound, _label) in QUOTA_FIELDS.items():
        text = typed[field]
        if not text:
            problems[field] = with_rule(_("Enter a whole number."), "required")
        elif not text.isdigit():
            problems[field] = with_rule(_("Enter a whole number, 0 or more."), "integer")
        elif int(text) > bound:
            problems[field] = with_rule(_("At most %(max)d.") % {"max": bound}, "le")
        else:
            wanted[field] = int(text)
    if problems:
        return _unit_page(request, session, token, user, unit, errs=problems, values=typed, status=422)
    try:
        units.set_quota(session, identity.who(user), unit_id, wanted)
    except errors.PortalError as exc:
        session.rollback()
        return _unit_page(
            request, session, token, user, unit, errs=shown(exc, "max_vms"), values=typed, status=exc.status
        )
    return RedirectResponse(f"/admin/units/{unit_id}?done=quota", status_code=303)
