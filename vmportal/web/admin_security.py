"""告警来源 and 处置策略: the machines allowed to post alerts (/admin/alert-sources: sortable, filterable,
paged, and the form that registers one through alerts.sources.create_source, as POST
/api/v1/alert-sources; its signing secret and/or bearer token are shown on that answer only, with a
warning and copy buttons, never again, and no cache keeps the answer) and the containment policy
table (/admin/containment-policy: category × minimum severity × confidence → action, replaced as a
whole through incidents.containment.put_policy, as PUT /api/v1/security/containment-policy; a
refused row, such as a low-confidence row that would contain, is shown beside it with the rule and
its reason, the table as typed kept, nothing written).

Only the center administrator registers a source or changes the table; the center's operators and
the auditor read both; anyone else is refused naming the rule.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlmodel import Session

from policies.compromise import Category, Confidence, Containment, Severity
from vmportal.alerts import SourceKind
from vmportal.alerts import sources as alert_sources
from vmportal.identity import service as identity
from vmportal.identity.models import User
from vmportal.incidents import containment
from vmportal.incidents.models import AlertSource
from vmportal.kit import errors
from vmportal.kit.http import SessionDep
from vmportal.web import common
from vmportal.web.admin_common import ADMINS, READERS, listing, refused, shown, templates, with_rule
from vmportal.web.i18n import gettext as _
from vmportal.web.i18n import pgettext
from vmportal.web.incident_pages import action_label, category_label
from vmportal.web.session import current as _current
from vmportal.web.session import to_login as _to_login

router = APIRouter(include_in_schema=False)

SOURCES = "/admin/alert-sources"
POLICY = "/admin/containment-policy"
SOURCE_FIELDS = ("name", "kind", "auth", "allowed_cidrs", "description")
#: Blank rows offered under the table for new rules.
BLANK_ROWS = 3
MAX_RULES = 200
RULE_FIELDS = ("category", "min_severity", "confidence", "action")


def _refuse(request: Request, token: str, user: User, action: str) -> Response:
    reasons = {
        "sources.read": (
            "alert_source.read",
            SOURCES,
            _("only the center's staff and the auditor see the alert sources"),
        ),
        "sources.create": (
            "alert_source.create",
            SOURCES,
            _("only the center administrator registers an alert source"),
        ),
        "policy.read": (
            "containment_policy.read",
            POLICY,
            _("only the center's staff and the auditor see the containment policy"),
        ),
        "policy.update": (
            "containment_policy.update",
            POLICY,
            _("only the center administrator changes the containment policy"),
        ),
    }
    rule, active, reason = reasons[action]
    return refused(request, token, user, active, rule, reason)


def auth_label(auth: str) -> str:
    names = {
        alert_sources.AuthMethod.HMAC.value: _("Signature (Standard Webhooks secret)"),
        alert_sources.AuthMethod.BEARER.value: _("Bearer token"),
        alert_sources.AuthMethod.BOTH.value: _("Signature or bearer token"),
    }
    return names.get(auth, auth)


# ---- alert sources --------------------------------------------------------------------------------------


def _sources_page(
    request: Request,
    session: Session,
    token: str,
    user: User,
    *,
    errs: dict[str, str] | None = None,
    values: dict[str, str] | None = None,
    issued: dict[str, Any] | None = None,
    flash: tuple[str, str] | None = None,
    status: int = 200,
) -> Response:
    query = request.query_params if request.method == "GET" else {}
    q = str(query.get("q", "")).strip()[:100]
    kind = str(query.get("kind", ""))
    kind = kind if kind in {k.value for k in SourceKind} else ""
    state = str(query.get("state", ""))
    state = state if state in ("active", "inactive") else ""
    needle = q.casefold()

    def keep(s: AlertSource) -> bool:
        if kind and s.kind != kind:
            return False
        if state and s.active != (state == "active"):
            return False
        return not needle or needle in s.name or needle in s.description.casefold()

    page_text = str(query.get("page", "1"))
    found = listing(
        alert_sources.list_sources(session),
        {"name": lambda s: s.name, "kind": lambda s: s.kind, "created_at": lambda s: s.created_at},
        sort=str(query.get("sort", "")),
        order=str(query.get("order", "")),
        page=int(page_text) if page_text.isdigit() else 1,
        default="name",
        keep=keep,
    )
    errs = errs or {}
    flashes = [flash] if flash else []
    if "" in errs:
        flashes.append(("error", errs[""]))
    kinds = [(k.value, k.value) for k in SourceKind]
    context = {
        **common.base(token, user, _("Alert sources"), SOURCES),
        "rows": [{"s": s, "auth": auth_label(alert_sources.auth_of(s))} for s in found.rows],
        "listing": found,
        "filters": {"q": q, "kind": kind, "state": state},
        "kind_filter": [("", _("Any")), *kinds],
        "kind_options": [("", _("Choose the format it posts")), *kinds],
        "auth_options": [("", _("The usual one for its kind"))]
        + [(m.value, auth_label(m.value)) for m in alert_sources.AuthMethod],
        "may_create": user.role in ADMINS,
        "why_not": _("Only the center administrator registers an alert source."),
        "values": values or {},
        "errors": {k: v for k, v in errs.items() if k},
        "labels": {
            "name": _("Name"),
            "kind": _("Kind"),
            "auth": _("How it authenticates"),
            "allowed_cidrs": _("Addresses it may post from"),
            "description": _("Description"),
        },
        "issued": issued,
        "flashes": flashes,
    }
    response = templates.TemplateResponse(request, "alert_sources.html", context, status_code=status)
    if issued:
        response.headers["Cache-Control"] = "no-store"  # the answer carries the credentials
    return response


@router.get(SOURCES, response_class=HTMLResponse)
def source_list(request: Request, session: SessionDep) -> Response:
    current = _current(request, session)
    if current is None:
        return _to_login(request)
    token, user = current
    if user.role not in READERS:
        return _refuse(request, token, user, "sources.read")
    return _sources_page(request, session, token, user)


@router.post(SOURCES)
async def create_source(request: Request, session: SessionDep) -> Response:
    posted = await common.signed_form(templates, request, session)
    if isinstance(posted, Response):
        return posted
    token, user, form = posted
    if user.role not in ADMINS:
        return _refuse(request, token, user, "sources.create")
    typed = {f: str(form.get(f, "")).strip()[:4000] for f in SOURCE_FIELDS}
    problems: dict[str, str] = {}
    if not typed["name"]:
        problems["name"] = with_rule(_("This field is required."), "required")
    if typed["kind"] not in {k.value for k in SourceKind}:
        problems["kind"] = with_rule(_("Choose one of the formats listed."), "one_of")
    if typed["auth"] and typed["auth"] not in {m.value for m in alert_sources.AuthMethod}:
        problems["auth"] = with_rule(_("Choose one of the methods listed."), "one_of")
    if len(typed["description"]) > 500:
        problems["description"] = with_rule(_("At most %(max)d characters.") % {"max": 500}, "max_length")
    if problems:
        return _sources_page(request, session, token, user, errs=problems, values=typed, status=422)
    try:
        source, credentials = alert_sources.create_source(
            session,
            identity.who(user),
            name=typed["name"],
            kind=SourceKind(typed["kind"]),
            auth=alert_sources.AuthMethod(typed["auth"]) if typed["auth"] else None,
            allowed_cidrs=[c for c in re.split(r"[\s,，]+", typed["allowed_cidrs"]) if c],
            description=typed["description"],
            created_by=user.id,
        )
    except errors.PortalError as exc:
        session.rollback()  # nothing half-written
        refusal = {re.sub(r"\[\d+\]$", "", k): v for k, v in shown(exc, "name").items()}
        return _sources_page(request, session, token, user, errs=refusal, values=typed, status=exc.status)
    issued = {
        "name": source.name,
        "secret": credentials.secret,
        "token": credentials.token,
        "url": f"/api/v1/alerts/{source.name}",
    }
    flash = ("success", _("The alert source %(name)s is registered.") % {"name": source.name})
    return _sources_page(request, session, token, user, issued=issued, flash=flash, status=201)


# ---- the containment policy ------------------------------------------------------------------------------


def severity_label(value: str) -> str:
    names = {
        Severity.CRITICAL: pgettext("severity", "Critical"),
        Severity.HIGH: pgettext("severity", "High"),
        Severity.MEDIUM: pgettext("severity", "Medium"),
        Severity.LOW: pgettext("severity", "Low"),
    }
    return common.label(names, Severity, value)


def confidence_label(value: str) -> str:
    names = {
        Confidence.HIGH: pgettext("confidence", "High: a strong signal"),
        Confidence.LOW: pgettext("confidence", "Low: a single weak signal"),
    }
    return common.label(names, Confidence, value)


def _policy_page(
    request: Request,
    session: Session,
    token: str,
    user: User,
    *,
    rows: list[dict[str, str]] | None = None,
    errs: dict[str, str] | None = None,
    flash: tuple[str, str] | None = None,
    status: int = 200,
) -> Response:
    view = containment.get_policy(session)
    stored = [containment.rule_dict(r) for r in view.rules]
    shown_rows = rows if rows is not None else stored
    blank = {f: "" for f in RULE_FIELDS}
    errs = errs or {}
    flashes = [flash] if flash else []
    if "" in errs:
        flashes.append(("error", errs[""]))
    choose = [("", _("(empty row: not saved)"))]
    context = {
        **common.base(token, user, _("Containment policy"), POLICY),
        "rows": [*shown_rows, *([blank] * BLANK_ROWS)] if user.role in ADMINS else shown_rows,
        "stored_count": len(shown_rows),
        "is_default": view.is_default,
        "updated_at": view.updated_at,
        "options": {
            "category": choose + [(c.value, category_label(c.value)) for c in Category],
            "min_severity": choose + [(s.value, severity_label(s.value)) for s in Severity],
            "confidence": choose + [(c.value, confidence_label(c.value)) for c in Confidence],
            "action": choose + [(a.value, action_label(a.value)) for a in Containment],
        },
        "names": {
            "category": category_label,
            "min_severity": severity_label,
            "confidence": confidence_label,
            "action": action_label,
        },
        "errors": {k: v for k, v in errs.items() if k},
        "may_change": user.role in ADMINS,
        "why_not": _("Only the center administrator changes the containment policy."),
        "flashes": flashes,
    }
    return templates.TemplateResponse(request, "containment_policy.html", context, status_code=status)


@router.get(POLICY, response_class=HTMLResponse)
def policy_page(request: Request, session: SessionDep, done: str = "") -> Response:
    current = _current(request, session)
    if current is None:
        return _to_login(request)
    token, user = current
    if user.role not in READERS:
        return _refuse(request, token, user, "policy.read")
    flash = ("success", _("The containment policy is saved.")) if done == "saved" else None
    return _policy_page(request, session, token, user, flash=flash)


def _error_key(field: str) -> str:
    """``rules[3].action`` → ``3.action``; ``rules[3]`` → ``3``."""
    m = re.fullmatch(r"rules\[(\d+)\](?:\.(\w+))?", field)
    if m is None:
        return ""
    return m.group(1) + (f".{m.group(2)}" if m.group(2) else "")


@router.post(POLICY)
async def save_policy(request: Request, session: SessionDep) -> Response:
    """The table as the form sends it: row i's fields are ``rules-i-<field>``; a row left wholly
    empty is dropped, a row half filled is refused beside its empty field; the rest is the
    service's (low-confidence rows notify only, no duplicate rows)."""
    current = _current(request, session)
    if current is None:
        return _to_login(request)
    token, user = current
    form = await request.form(max_fields=4 * (MAX_RULES + BLANK_ROWS) + 10)
    if (bad := common.csrf_refused(templates, request, token, user, form)) is not None:
        return bad
    if user.role not in ADMINS:
        return _refuse(request, token, user, "policy.update")
    indices = sorted({int(m.group(1)) for key in form if (m := re.fullmatch(r"rules-(\d{1,4})-\w+", key))})
    typed: list[dict[str, str]] = []
    for i in indices:
        row = {f: str(form.get(f"rules-{i}-{f}", "")).strip()[:32] for f in RULE_FIELDS}
        if any(row.values()):
            typed.append(row)
    problems: dict[str, str] = {}
    allowed = {
        "category": {c.value for c in Category},
        "min_severity": {s.value for s in Severity},
        "confidence": {c.value for c in Confidence},
        "action": {a.value for a in Containment},
    }
    for i, row in enumerate(typed):
        for f in RULE_FIELDS:
            if not row[f]:
                problems[f"{i}.{f}"] = with_rule(_("Choose a value, or empty the whole row."), "required")
            elif row[f] not in allowed[f]:
                problems[f"{i}.{f}"] = with_rule(_("Choose one of the values listed."), "one_of")
    if len(typed) > MAX_RULES:
        problems[""] = with_rule(_("At most %(max)d rules.") % {"max": MAX_RULES}, "max_items")
    if problems:
        return _policy_page(request, session, token, user, rows=typed, errs=problems, status=422)
    try:
        containment.put_policy(session, identity.who(user), typed, user_id=user.id)
    except errors.PortalError as exc:
        session.rollback()
        refusal = {_error_key(k): v for k, v in shown(exc).items()}
        key = next(iter(refusal))
        if key and "." not in key:  # the row as a whole (a duplicate): beside its category
            refusal = {f"{key}.category": refusal[key]}
        return _policy_page(request, session, token, user, rows=typed, errs=refusal, status=exc.status)
    return RedirectResponse(f"{POLICY}?done=saved", status_code=303)
