"""Security response: alert sources, the alert webhook, alerts, the containment policy, incidents and
rectification reports.

Who may do what: the center_admin manages alert sources and the containment table; center staff
(admin, operator) handle alerts and incidents (assign, confirm, dismiss, retry, accept, reject); the
auditor reads everything; a unit's users read their own unit's incidents (another unit's answer 404) and
its security administrator submits the rectification reports. Alert senders authenticate with their
source's own secret or token, not a user's.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse
from sqlmodel import Session
from starlette.datastructures import UploadFile

from policies.compromise import Category, Containment
from policies.roles import Actor, Role
from vmportal.identity.deps import CurrentActor, CurrentUser, CurrentWho, require
from vmportal.incidents import containment, rectification
from vmportal.incidents import service as incident
from vmportal.incidents.lifecycle import INCIDENT
from vmportal.incidents.models import (
    ContainmentState,
    IncidentState,
    Rectification,
)
from vmportal.incidents.schemas import (
    AcceptIn,
    AttachmentOut,
    ConfirmIn,
    IncidentList,
    IncidentOut,
    PolicyIn,
    PolicyOut,
    ProtectedIn,
    ProtectedOut,
    ReasonIn,
    RectificationOut,
    RetryIn,
    RuleIn,
    TimelineItemOut,
)
from vmportal.kit import errors
from vmportal.kit.http import SessionDep
from vmportal.kit.scope import CENTER
from vmportal.kit.settings import get_settings

router = APIRouter(tags=["security"])

PREFIX = "/api/v1"
MAX_ID = 2**31 - 1
Id = Annotated[int, Path(ge=1, le=MAX_ID)]
Limit = Annotated[int, Query(ge=1, le=500)]
Offset = Annotated[int, Query(ge=0, le=1_000_000)]
NO_STORE = {"Cache-Control": "no-store"}

# ---- containment policy --------------------------------------------------------------------------------


def policy_out(view: containment.PolicyView) -> PolicyOut:
    return PolicyOut(
        rules=[RuleIn.model_validate(containment.rule_dict(r)) for r in view.rules],
        is_default=view.is_default,
        updated_at=view.updated_at,
        updated_by=view.updated_by,
    )


@router.get(
    "/security/containment-policy",
    response_model=PolicyOut,
    summary="The containment table: category × minimum severity × confidence → action",
)
def get_policy(session: SessionDep, actor: CurrentActor) -> PolicyOut:
    return policy_out(containment.get_policy(session))


@router.put(
    "/security/containment-policy",
    response_model=PolicyOut,
    dependencies=[require(Role.CENTER_ADMIN)],
    summary="Replace the containment table (a low-confidence row may only notify: 422 otherwise)",
)
def put_policy(body: PolicyIn, session: SessionDep, user: CurrentUser, who: CurrentWho) -> PolicyOut:
    view = containment.put_policy(session, who, [r.model_dump() for r in body.rules], user_id=user.id)
    return policy_out(view)


@router.put(
    "/security/protected-vms/{vm_id}",
    response_model=ProtectedOut,
    dependencies=[require(Role.CENTER_ADMIN)],
    summary="Mark a VM as protected (never contained automatically: an alert opens an incident for a "
    "human) or unmark it; audited with the reason",
)
def put_protected(vm_id: Id, body: ProtectedIn, session: SessionDep, who: CurrentWho) -> ProtectedOut:
    vm = incident.set_protected(session, who, vm_id, body.protected, body.reason)
    return ProtectedOut(vm_id=vm_id, protected=vm.protected)


# ---- incidents ---------------------------------------------------------------------------------------


def incident_out(row: incident.IncidentRow, role: Role) -> IncidentOut:
    i = row.incident
    assert i.id is not None
    links = {
        "self": f"{PREFIX}/incidents/{i.id}",
        "timeline": f"{PREFIX}/incidents/{i.id}/timeline",
        "rectifications": f"{PREFIX}/incidents/{i.id}/rectifications",
    }
    if i.vm_id is not None:
        links["vm"] = f"{PREFIX}/vms/{i.vm_id}"
    data = i.model_dump()
    data.update(
        vm_name=row.vm_name,
        vm_ip=row.vm_ip,
        unit_code=row.unit_code,
        actions=INCIDENT.available(i.state, role),
        links=links,
    )
    return IncidentOut.model_validate(data)


@router.get("/incidents", response_model=IncidentList, summary="Incidents, newest first (units: their own)")
def list_incidents(
    session: SessionDep,
    actor: CurrentActor,
    state: IncidentState | None = None,
    containment_state: ContainmentState | None = None,
    active: Annotated[bool | None, Query(description="true: not closed or dismissed")] = None,
    vm_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    unit_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    category: Category | None = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> IncidentList:
    f = incident.IncidentFilters(state, containment_state, active, vm_id, unit_id, category, limit, offset)
    rows, total = incident.list_incidents(session, actor, f)
    return IncidentList(
        items=[incident_out(r, actor.role) for r in rows], total=total, limit=limit, offset=offset
    )


@router.get("/incidents/{incident_id}", response_model=IncidentOut)
def get_incident(incident_id: Id, session: SessionDep, actor: CurrentActor) -> IncidentOut:
    return incident_out(incident.get_incident(session, actor, incident_id), actor.role)


@router.get(
    "/incidents/{incident_id}/timeline",
    response_model=list[TimelineItemOut],
    summary="Alerts, decisions and actions in time order",
)
def get_timeline(incident_id: Id, session: SessionDep, actor: CurrentActor) -> list[TimelineItemOut]:
    return [TimelineItemOut(**item.__dict__) for item in incident.timeline(session, actor, incident_id)]


def _answer(session: Session, actor: Actor, incident_id: int) -> IncidentOut:
    return incident_out(incident.get_incident(session, actor, incident_id), actor.role)


@router.post(
    "/incidents/{incident_id}/confirm",
    response_model=IncidentOut,
    status_code=status.HTTP_202_ACCEPTED,
    dependencies=[require(*CENTER)],
    summary="Order the containment of an open incident (notify-only, a victim, a notice)",
)
def confirm_incident(
    incident_id: Id, body: ConfirmIn, session: SessionDep, actor: CurrentActor, who: CurrentWho
) -> IncidentOut:
    incident.confirm(session, actor, who, incident_id, Containment(body.action.value), body.reason)
    return _answer(session, actor, incident_id)


@router.post(
    "/incidents/{incident_id}/dismiss",
    response_model=IncidentOut,
    dependencies=[require(*CENTER)],
    summary="Dismiss as a false positive; a contained VM is restored",
)
def dismiss_incident(
    incident_id: Id, body: ReasonIn, session: SessionDep, actor: CurrentActor, who: CurrentWho
) -> IncidentOut:
    incident.dismiss(session, actor, who, incident_id, body.reason)
    return _answer(session, actor, incident_id)


@router.post(
    "/incidents/{incident_id}/retry",
    response_model=IncidentOut,
    status_code=status.HTTP_202_ACCEPTED,
    dependencies=[require(*CENTER)],
    summary="Run a failed (or pending) containment or restore again",
)
def retry_incident(
    incident_id: Id, body: RetryIn, session: SessionDep, actor: CurrentActor, who: CurrentWho
) -> IncidentOut:
    action = Containment(body.action.value) if body.action is not None else None
    incident.retry(session, actor, who, incident_id, action)
    return _answer(session, actor, incident_id)


# ---- rectification -----------------------------------------------------------------------------------


def rectification_out(r: Rectification, attachments: list[Any]) -> RectificationOut:
    assert r.id is not None
    return RectificationOut(
        **r.model_dump(),
        attachments=[
            AttachmentOut(
                id=a.id,
                filename=a.filename,
                content_type=a.content_type,
                size=a.size,
                sha256=a.sha256,
                link=f"{PREFIX}/rectifications/{r.id}/attachments/{a.id}",
            )
            for a in attachments
        ],
    )


_MULTIPART_OVERHEAD = 64 * 1024
_UPLOAD_SCHEMA: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["text"],
                    "properties": {
                        "text": {"type": "string", "maxLength": rectification.MAX_TEXT},
                        "files": {
                            "type": "array",
                            "maxItems": rectification.MAX_FILES,
                            "items": {"type": "string", "format": "binary"},
                            "description": "PDF, PNG, JPEG or text; VMPORTAL_UPLOAD_MAX_BYTES each",
                        },
                    },
                }
            }
        },
    }
}


@router.post(
    "/incidents/{incident_id}/rectifications",
    response_model=RectificationOut,
    status_code=status.HTTP_201_CREATED,
    openapi_extra=_UPLOAD_SCHEMA,
    summary="Submit a rectification report (the unit's security administrator; multipart: text, files)",
)
async def submit_rectification(
    incident_id: Id, request: Request, session: SessionDep, actor: CurrentActor, who: CurrentWho
) -> RectificationOut:
    settings = get_settings()
    limit = settings.upload_max_bytes * rectification.MAX_FILES + _MULTIPART_OVERHEAD
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise errors.PayloadTooLarge(
            f"the report is larger than {limit} bytes in all",
            message_zh=f"整改报告总大小超过 {limit} 字节",
            limit=limit,
        )
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
        raise errors.UnsupportedMediaType(
            "send the report as multipart/form-data (text, files)",
            message_zh="请以 multipart/form-data 提交整改报告（text、files）",
        )
    form = await request.form(max_files=rectification.MAX_FILES + 1, max_fields=10)
    try:
        text = form.get("text")
        if not isinstance(text, str):
            raise errors.InvalidField(
                "text", "required", "a text part named 'text' is required", message_zh="缺少整改说明（text）"
            )
        uploads = [
            rectification.Upload(part.filename, part.content_type or "", part.file)
            for name in ("files", "file")
            for part in form.getlist(name)
            if isinstance(part, UploadFile)
        ]

        def submit() -> RectificationOut:
            rect = rectification.submit(session, actor, who, incident_id, text, uploads, settings)
            assert rect.id is not None
            return rectification_out(rect, rectification.attachments(session, [rect.id])[rect.id])

        return await run_in_threadpool(submit)
    finally:
        await form.close()


@router.get("/incidents/{incident_id}/rectifications", response_model=list[RectificationOut])
def list_rectifications(incident_id: Id, session: SessionDep, actor: CurrentActor) -> list[RectificationOut]:
    rows = rectification.list_for_incident(session, actor, incident_id)
    files = rectification.attachments(session, [r.id for r in rows if r.id is not None])
    return [rectification_out(r, files.get(r.id or 0, [])) for r in rows]


@router.get("/rectifications/{rect_id}", response_model=RectificationOut)
def get_rectification(rect_id: Id, session: SessionDep, actor: CurrentActor) -> RectificationOut:
    rect = rectification.get_rectification(session, actor, rect_id)
    return rectification_out(rect, rectification.attachments(session, [rect_id])[rect_id])


@router.get(
    "/rectifications/{rect_id}/attachments/{attachment_id}",
    response_class=FileResponse,
    summary="Download an attachment of a rectification report",
)
def download_attachment(
    rect_id: Id, attachment_id: Id, session: SessionDep, actor: CurrentActor
) -> FileResponse:
    attachment = rectification.get_attachment(session, actor, rect_id, attachment_id)
    path = rectification.attachment_path(attachment)
    if not path.is_file():
        raise errors.NotFound("attachment file", attachment_id)
    return FileResponse(path, media_type=attachment.content_type, filename=attachment.filename)


@router.post(
    "/rectifications/{rect_id}/accept",
    response_model=RectificationOut,
    status_code=status.HTTP_202_ACCEPTED,
    dependencies=[require(*CENTER)],
    summary="Accept the report: the VM is restored (confirmed by the hypervisor), the incident closed",
)
def accept_rectification(
    rect_id: Id, body: AcceptIn, session: SessionDep, actor: CurrentActor, who: CurrentWho
) -> RectificationOut:
    rect = rectification.accept(session, actor, who, rect_id, body.comment)
    return rectification_out(rect, rectification.attachments(session, [rect_id])[rect_id])


@router.post(
    "/rectifications/{rect_id}/reject",
    response_model=RectificationOut,
    dependencies=[require(*CENTER)],
    summary="Reject the report with a reason: the VM stays suspended",
)
def reject_rectification(
    rect_id: Id, body: ReasonIn, session: SessionDep, actor: CurrentActor, who: CurrentWho
) -> RectificationOut:
    rect = rectification.reject(session, actor, who, rect_id, body.reason)
    return rectification_out(rect, rectification.attachments(session, [rect_id])[rect_id])
