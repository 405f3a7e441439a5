"""What every page handler shares: the navigation each role sees, the context base.html needs, the
CSRF check of a state-changing form, the 404 page, and a service message in the user's language.

The navigation is one table (:data:`NAV`): an entry lists the roles that find it, so a role sees
its own work only; a page outside a role's entries still answers that role by its own rule (a
refusal naming the rule, or the 404 of another unit's record).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import Request
from fastapi.datastructures import FormData
from fastapi.responses import HTMLResponse, Response
from fastapi.templating import Jinja2Templates
from sqlmodel import Session

from policies.roles import Role
from vmportal.identity.models import User
from vmportal.kit import errors
from vmportal.web import session as session_state
from vmportal.web.i18n import N_, current_locale
from vmportal.web.i18n import gettext as _
from vmportal.web.session import csrf_for, csrf_ok, user_view

E = TypeVar("E")


def label(names: Mapping[E, str], kind: Callable[[str], E], value: str) -> str:
    """The words of ``names`` for a stored state or kind (``kind`` parses it into its enum); a value
    the enum or the table does not know shows as it is stored rather than failing the page."""
    try:
        return names[kind(value)]
    except (ValueError, KeyError):
        return value


UA, UL, OP, CA, AU = (
    Role.UNIT_ADMIN.value,
    Role.UNIT_LEAD.value,
    Role.CENTER_OPERATOR.value,
    Role.CENTER_ADMIN.value,
    Role.AUDITOR.value,
)


@dataclass(frozen=True)
class NavEntry:
    url: str
    label: str  # the English msgid; translated when the navigation is built
    icon: str
    roles: frozenset[str]


#: The main navigation, in order. ``label`` is translated per request.
NAV: tuple[NavEntry, ...] = (
    NavEntry("/", N_("Dashboard"), "info", frozenset({UA, UL, OP, CA, AU})),
    NavEntry("/queue", N_("Approval queue"), "clock", frozenset({OP, CA})),
    NavEntry("/vms", N_("My VMs"), "vm", frozenset({UA, UL, OP, CA, AU})),
    NavEntry("/requests/new", N_("Request a VM"), "upload", frozenset({UA})),
    NavEntry("/requests", N_("My requests"), "clock", frozenset({UA, UL, OP, CA})),
    NavEntry("/endorsements", N_("Awaiting my endorsement"), "check", frozenset({UL})),
    NavEntry("/incidents", N_("Security incidents"), "shield-alert", frozenset({UA, UL, OP, CA, AU})),
    NavEntry("/findings", N_("Findings"), "warning", frozenset({UA, UL, OP, CA, AU})),
    NavEntry("/notices", N_("Authority notices"), "info", frozenset({OP, CA, AU})),
    NavEntry("/violations", N_("Forbidden services"), "warning", frozenset({UA, UL, OP, CA, AU})),
    NavEntry("/unit", N_("Unit information"), "info", frozenset({UA, UL})),
    NavEntry("/cleanup", N_("Clean-up"), "check", frozenset({UA, UL, OP, CA, AU})),
    NavEntry("/maintenance", N_("Planned outages"), "clock", frozenset({UA, UL, OP, CA, AU})),
    NavEntry("/audit-log", N_("Audit log"), "shield", frozenset({AU, CA})),
    NavEntry("/inventory", N_("Unregistered VMs"), "server", frozenset({OP, CA})),
    NavEntry("/reports", N_("Reports"), "info", frozenset({OP, CA, AU})),
    NavEntry("/settings", N_("Center settings"), "shield", frozenset({OP, CA, AU})),
    NavEntry("/admin/units", N_("Unit administration"), "server", frozenset({CA})),
    NavEntry("/admin/users", N_("Users"), "user", frozenset({CA})),
    NavEntry("/admin/pools", N_("IP pools"), "server", frozenset({CA})),
    NavEntry("/admin/connections", N_("Hypervisor connections"), "server", frozenset({CA})),
    NavEntry("/admin/alert-sources", N_("Alert sources"), "shield-alert", frozenset({CA})),
    NavEntry("/admin/containment-policy", N_("Containment policy"), "shield", frozenset({CA})),
    NavEntry("/admin/robots", N_("Group robots"), "info", frozenset({CA})),
    NavEntry("/account", N_("My account"), "user", frozenset({UA, UL, OP, CA, AU})),
)

#: Labels that read better for the center's roles (their lists cover every unit).
_CENTER_LABELS = {"/vms": N_("VMs"), "/requests": N_("Requests"), "/incidents": N_("Incident board")}


def nav_items(role: str, active: str = "") -> list[dict[str, Any]]:
    """The entries ``role`` sees, translated, the current one marked."""
    center = role in (OP, CA, AU)
    return [
        {
            "url": e.url,
            "label": _(_CENTER_LABELS[e.url] if center and e.url in _CENTER_LABELS else e.label),
            "icon": e.icon,
            "active": e.url == active,
        }
        for e in NAV
        if role in e.roles
    ]


def zh() -> bool:
    return current_locale().startswith("zh")


def say(en: str, zh_text: str) -> str:
    """A service's message in the user's language."""
    return zh_text if zh() else en


def error_message(exc: errors.PortalError) -> str:
    return say(exc.message, exc.message_zh)


def base(token: str, user: User, title: str, active: str) -> dict[str, Any]:
    """The context every page passes to base.html."""
    return {
        "page_title": title,
        "user": user_view(user),
        "csrf_token": csrf_for(token),
        "nav": nav_items(user.role, active),
    }


async def signed_form(
    templates: Jinja2Templates, request: Request, session: Session
) -> tuple[str, User, FormData] | Response:
    """The start of every state-changing page handler: the signed-in visitor (else the log-in page,
    which comes back here) and the posted form with its CSRF token checked (else the refusal page).
    The session token, the user and the form, or the answer to send at once."""
    current = session_state.current(request, session)
    if current is None:
        return session_state.to_login(request)
    token, user = current
    form = await request.form()
    if (bad := csrf_refused(templates, request, token, user, form)) is not None:
        return bad
    return token, user, form


def csrf_refused(
    templates: Jinja2Templates, request: Request, token: str, user: User, form: FormData
) -> Response | None:
    """The 403 page when a state-changing form lacks its CSRF token (field or htmx header)."""
    if csrf_ok(token, form.get("csrf_token") or request.headers.get("x-csrf-token")):
        return None
    context = {**base(token, user, _("Refused"), ""), "message": _("Missing or wrong CSRF token")}
    return templates.TemplateResponse(request, "pages/error.html", context, status_code=403)


def not_found(
    templates: Jinja2Templates, request: Request, token: str, user: User, active: str, message: str
) -> HTMLResponse:
    context = {**base(token, user, _("Not found"), active), "message": message}
    return templates.TemplateResponse(request, "pages/error.html", context, status_code=404)


def refused(
    templates: Jinja2Templates, request: Request, token: str, user: User, active: str, message: str
) -> HTMLResponse:
    context = {**base(token, user, _("Refused"), active), "message": message}
    return templates.TemplateResponse(request, "pages/error.html", context, status_code=403)
