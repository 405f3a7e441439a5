"""申请虚拟机: the request form (/requests/new) over the same use case as POST /api/v1/requests.

The form offers the unit's registered information systems (or a new one with its purpose), the
templates of every reachable hypervisor connection, the size and the IP pool, and shows before
submitting what the unit has left of its quota and what paperwork is missing. The posted values
become the API's own ``RequestIn``, so a value the API refuses is refused here with the same rule;
every error is shown beside its field in the user's language with the entered values kept, and
nothing is written (the page's session is rolled back; the service writes only the refusal's
audit row, in its own transaction, as for the API).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlmodel import Session

from policies.purpose import Purpose
from policies.roles import Role
from vmportal.connection import service as connections
from vmportal.identity import service as identity
from vmportal.identity.models import User
from vmportal.kit import errors
from vmportal.kit.http import SessionDep
from vmportal.network import service as network
from vmportal.request import service as requests
from vmportal.request.schemas import (
    MAX_DISK_GIB,
    MAX_MEMORY_GIB,
    MAX_VCPUS,
    MIN_DISK_GIB,
    MIN_MEMORY_GIB,
    MIN_VCPUS,
    RequestIn,
)
from vmportal.request.service.report import quota_report
from vmportal.unit import service as units
from vmportal.web import common, templating
from vmportal.web.i18n import gettext as _
from vmportal.web.session import current as _current
from vmportal.web.session import to_login as _to_login

router = APIRouter(include_in_schema=False)
_templates = templating.templates(Path(__file__).parent / "templates" / "unit")

#: The form's fields, in order; an error of the API's field goes beside the form's field.
FIELDS: tuple[str, ...] = (
    "system_id",
    "system_name",
    "purpose",
    "description",
    "hostname",
    "template",
    "vcpus",
    "memory_gib",
    "disk_gib",
    "pool_id",
)
_FIELD_OF = {"connection_id": "template", "template_ref": "template", "beneficiary": "purpose"}
#: The purposes the agreement accepts (policies.purpose refuses the others with its reason).
PURPOSES = (Purpose.TEACHING, Purpose.RESEARCH, Purpose.MANAGEMENT)


def field_labels() -> dict[str, str]:
    return {
        "system_id": _("Information system"),
        "system_name": _("Name of the new information system"),
        "purpose": _("Purpose"),
        "description": _("Description"),
        "hostname": _("Host name"),
        "template": _("Template"),
        "vcpus": _("vCPUs"),
        "memory_gib": _("Memory (GiB)"),
        "disk_gib": _("Disk (GiB)"),
        "pool_id": _("IP pool"),
        "form": _("Request"),
    }


def purpose_label(purpose: str) -> str:
    return {
        Purpose.TEACHING.value: _("Teaching"),
        Purpose.RESEARCH.value: _("Research"),
        Purpose.MANAGEMENT.value: _("Management"),
    }.get(purpose, purpose)


def _format_error(error: dict[str, Any]) -> str:
    """A pydantic error of one field in the user's language."""
    ctx = error.get("ctx") or {}
    kind = str(error.get("type", ""))
    texts = {
        "missing": _("This field is required"),
        "string_too_short": _("This field is required"),
        "string_too_long": _("At most %(n)s characters") % {"n": ctx.get("max_length", "")},
        "string_pattern_mismatch": _(
            "Use letters, digits and hyphens only (up to 63), not starting or ending with a hyphen"
        ),
        "greater_than_equal": _("At least %(n)s") % {"n": ctx.get("ge", "")},
        "less_than_equal": _("At most %(n)s") % {"n": ctx.get("le", "")},
        "greater_than": _("Choose one of the listed values"),
        "int_parsing": _("Enter a whole number"),
        "int_type": _("Enter a whole number"),
        "enum": _("Choose one of the listed values"),
    }
    return texts.get(kind, _("This value is not accepted"))


def _with_rule(message: str, rule: str) -> str:
    return _("%(message)s (rule %(rule)s)") % {"message": message, "rule": rule}


def _blank() -> dict[str, str]:
    return {name: "" for name in FIELDS} | {"vcpus": "2", "memory_gib": "4", "disk_gib": "40"}


def _choices(session: Session, user: User) -> dict[str, Any]:
    """What the form offers and shows before submitting: systems, templates, pools, quota left,
    the paperwork gaps."""
    unit_id = user.unit_id
    assert unit_id is not None
    systems = units.list_systems(session, unit_id)
    paperwork = units.paperwork_status(session, unit_id)
    report = quota_report(session, unit_id=unit_id)
    templates, unreachable = connections.all_templates(session)
    on = _("%(template)s on %(connection)s")
    pools = [p for conn in {c.id for c, _t in templates} for p in network.list_pools(session, conn)]
    return {
        "systems": [("", _("A new information system (fill in below)"))]
        + [(str(s.id), s.name) for s in systems],
        "purposes": [("", _("Choose…"))] + [(p.value, purpose_label(p.value)) for p in PURPOSES],
        "templates": [("", _("Choose…"))]
        + [
            (
                f"{c.id}:{t.ref}",
                on % {"template": t.name, "connection": c.name},
            )
            for c, t in templates
        ],
        "unreachable": [c.name for c in unreachable],
        "pools": [("", _("The connection's default pool"))]
        + [(str(p.id), f"{p.name} ({p.cidr})") for p in pools],
        "paperwork": {
            "complete": paperwork.complete,
            "message": common.say(paperwork.message_en, paperwork.message_zh),
        },
        "quota": report[0].usage if report else None,
        "limits": {
            "vcpus": (MIN_VCPUS, MAX_VCPUS),
            "memory_gib": (MIN_MEMORY_GIB, MAX_MEMORY_GIB),
            "disk_gib": (MIN_DISK_GIB, MAX_DISK_GIB),
        },
    }


def _refusal(token: str, user: User) -> dict[str, Any]:
    return {
        **common.base(token, user, _("Request a VM"), "/requests/new"),
        "message": _("Rule request.submit: only a unit's security administrator requests VMs for the unit"),
    }


def _refused(request: Request, token: str, user: User) -> Response:
    context = _refusal(token, user)
    return _templates.TemplateResponse(request, "pages/error.html", context, status_code=403)


def _render(
    request: Request,
    session: Session,
    token: str,
    user: User,
    values: dict[str, str],
    errs: dict[str, str],
    status: int = 200,
) -> Response:
    context = {
        **common.base(token, user, _("Request a VM"), "/requests/new"),
        **_choices(session, user),
        "values": values,
        "errors": errs,
        "labels": field_labels(),
    }
    return _templates.TemplateResponse(request, "request_form.html", context, status_code=status)


@router.get("/requests/new", response_class=HTMLResponse)
def request_form(request: Request, session: SessionDep) -> Response:
    current = _current(request, session)
    if current is None:
        return _to_login(request)
    token, user = current
    if user.role != Role.UNIT_ADMIN.value or user.unit_id is None:
        return _refused(request, token, user)
    return _render(request, session, token, user, _blank(), {})


def _body(values: dict[str, str]) -> dict[str, Any]:
    """The form's values as the API's JSON body (empty optional fields left out)."""
    body: dict[str, Any] = {
        "hostname": values["hostname"].strip(),
        "description": values["description"].strip(),
    }
    if values["system_id"]:
        body["system_id"] = values["system_id"]
    else:
        body["system_name"] = values["system_name"].strip()
        if values["purpose"]:
            body["purpose"] = values["purpose"]
    connection, sep, ref = values["template"].partition(":")
    if sep:
        body["connection_id"], body["template_ref"] = connection, ref
    for name in ("vcpus", "memory_gib", "disk_gib"):
        body[name] = values[name].strip()
    if values["pool_id"]:
        body["pool_id"] = values["pool_id"]
    return body


def _errors_of(exc: errors.PortalError) -> dict[str, str]:
    """A refusal of the service as errors beside the fields it names (else above the form)."""
    out: dict[str, str] = {}
    if isinstance(exc, errors.PolicyDenied):
        for denial in exc.decision.denials:
            where = _FIELD_OF.get(denial.field or "", denial.field or "form")
            where = where if where in FIELDS else "form"
            text = _with_rule(common.say(denial.message_en, denial.message_zh), denial.rule)
            out[where] = f"{out[where]} {text}" if where in out else text
        return out
    for field in exc.extra.get("fields") or []:
        where = _FIELD_OF.get(field["field"], field["field"])
        where = where if where in FIELDS else "form"
        zh = exc.message_zh.split("：", 1)[-1]
        out[where] = _with_rule(common.say(str(field["message"]), zh), str(field["rule"]))
    if not out and isinstance(exc, errors.NotFound):
        resource = str(exc.extra.get("resource", ""))
        where = "system_id" if "system" in resource else "pool_id" if "pool" in resource else "form"
        out[where] = _with_rule(common.error_message(exc), "exists")
    if not out:
        out["form"] = common.error_message(exc)
    return out


@router.post("/requests/new")
async def submit_request(request: Request, session: SessionDep) -> Response:
    posted = await common.signed_form(_templates, request, session)
    if isinstance(posted, Response):
        return posted
    token, user, form = posted
    if user.role != Role.UNIT_ADMIN.value or user.unit_id is None:
        return _refused(request, token, user)
    values = {name: str(form.get(name, ""))[:4000] for name in FIELDS}
    errs: dict[str, str] = {}
    try:
        body = RequestIn.model_validate(_body(values))
    except ValidationError as exc:
        for e in exc.errors():
            name = str(e["loc"][0]) if e.get("loc") else "form"
            where = _FIELD_OF.get(name, name)
            where = where if where in FIELDS else "form"
            if where == "template" and values["template"] == "":
                errs[where] = _with_rule(_("Choose a template"), "missing")
                continue
            errs.setdefault(where, _with_rule(_format_error(dict(e)), str(e.get("type", "invalid"))))
        return _render(request, session, token, user, values, errs, status=422)
    try:
        req = requests.submit(session, identity.actor_of(user), identity.who(user), body)
    except errors.PortalError as exc:
        session.rollback()  # nothing half-written
        status = 422 if exc.status in (400, 404, 409, 422) else exc.status
        return _render(request, session, token, user, values, _errors_of(exc), status=status)
    return RedirectResponse(f"/requests/{req.id}", status_code=303)
