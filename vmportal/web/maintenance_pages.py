"""计划停机: the planned outages (agreement §9) as a page (/maintenance), read only.

A unit's users see the current and coming outages that touch their unit, with their own VMs in each;
the center's roles and the auditor see all of them, with the affected units. Announcing, changing and
cancelling are the API's (``/api/v1/maintenance``); this page only reads, through the service.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from vmportal.identity import service as identity
from vmportal.kit.http import SessionDep
from vmportal.kit.scope import sees_every_unit
from vmportal.maintenance import service as maintenance
from vmportal.web import common, templating
from vmportal.web.i18n import gettext as _
from vmportal.web.session import current as _current
from vmportal.web.session import to_login as _to_login

router = APIRouter(include_in_schema=False)
_templates = templating.templates(Path(__file__).parent / "templates" / "maintenance")


@router.get("/maintenance", response_class=HTMLResponse)
def maintenance_page(request: Request, session: SessionDep) -> Response:
    current = _current(request, session)
    if current is None:
        return _to_login(request)
    token, user = current
    actor = identity.actor_of(user)
    views = [maintenance.view(session, actor, w) for w in maintenance.list_windows(session, actor)]
    context = {
        **common.base(token, user, _("Planned outages"), "/maintenance"),
        "views": views,
        "center": sees_every_unit(actor.role),
    }
    return _templates.TemplateResponse(request, "maintenance.html", context)
