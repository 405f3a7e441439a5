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

from fastapi import APIRouter, Path, Query, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse
from sqlmodel import Session
from starlette.datastructures import UploadFile

from policies.compromise import Category, Containment
from policies.roles import Actor, Role
from vmportal.alerts import ingest
from vmportal.alerts import sources as source
from vmportal.identity.deps import CurrentActor, CurrentUser, CurrentWho, require
from vmportal.incidents import containment, lifecycle, rectification
from vmportal.incidents import service as incident
from vmportal.incidents.models import (
    AlertRecord,
    AlertSource,
    AlertState,
    ContainmentState,
    IncidentState,
    Rectification,
    SecurityAlert,
)
from vmportal.incidents.schemas import (
    AcceptIn,
    AlertList,
    AlertOut,
    AssignIn,
    AttachmentOut,
    ConfirmIn,
    IncidentList,
    IncidentOut,
    PolicyIn,
    PolicyOut,
    ReasonIn,
    RecordList,
    RecordOut,
    RectificationOut,
    RetryIn,
    RotateIn,
    RuleIn,
    SourceCreate,
    SourceCredentials,
    SourceOut,
    SourceUpdate,
    TimelineItemOut,
)
from vmportal.kit import errors
from vmportal.kit.db import utcnow
from vmportal.kit.http import SessionDep
from vmportal.kit.scope import CENTER, CENTER_READ
from vmportal.kit.settings import get_settings

router = APIRouter(tags=["security"])

PREFIX = "/api/v1"
MAX_ID = 2**31 - 1
Id = Annotated[int, Path(ge=1, le=MAX_ID)]
Limit = Annotated[int, Query(ge=1, le=500)]
Offset = Annotated[int, Query(ge=0, le=1_000_000)]
NO_STORE = {"Cache-Control": "no-store"}

# ---- alert sources -------------------------------------------------------------------------------------


def source_out(s: AlertSource) -> SourceOut:
    assert s.id is not None
    return SourceOut(
        id=s.id,
        name=s.name,
        kind=s.kind,
        description=s.description,
        auth=source.auth_of(s),
        has_secret=bool(s.secret),
        has_token=bool(s.token),
        allowed_cidrs=list(s.allowed_cidrs or []),
        active=s.active,
        created_at=s.created_at,
        updated_at=s.updated_at,
        credentials_rotated_at=s.credentials_rotated_at,
        last_post_at=s.last_post_at,
        endpoint=f"{PREFIX}/alerts/{s.name}",
    )


def credentials_out(s: AlertSource, creds: source.Credentials) -> SourceCredentials:
    return SourceCredentials(**source_out(s).model_dump(), secret=creds.secret, token=creds.token)


@router.post(
    "/alert-sources",
    response_model=SourceCredentials,
    status_code=status.HTTP_201_CREATED,
    dependencies=[require(Role.CENTER_ADMIN)],
    summary="Register an alert source; its secret and/or token are in this answer only",
)
def create_source(
    body: SourceCreate, session: SessionDep, user: CurrentUser, who: CurrentWho, response: Response
) -> SourceCredentials:
    created, creds = source.create_source(
        session,
        who,
        name=body.name,
        kind=body.kind,
        auth=body.auth,
        allowed_cidrs=body.allowed_cidrs,
        description=body.description,
        active=body.active,
        created_by=user.id,
    )
    response.headers.update(NO_STORE)
    return credentials_out(created, creds)


@router.get("/alert-sources", response_model=list[SourceOut], dependencies=[require(*CENTER_READ)])
def list_sources(session: SessionDep, active: bool | None = None) -> list[SourceOut]:
    return [source_out(s) for s in source.list_sources(session, active=active)]


@router.get("/alert-sources/{source_id}", response_model=SourceOut, dependencies=[require(*CENTER_READ)])
def get_source(source_id: Id, session: SessionDep) -> SourceOut:
    return source_out(source.get_source(session, source_id))


@router.patch(
    "/alert-sources/{source_id}", response_model=SourceOut, dependencies=[require(Role.CENTER_ADMIN)]
)
def update_source(source_id: Id, body: SourceUpdate, session: SessionDep, who: CurrentWho) -> SourceOut:
    return source_out(source.update_source(session, who, source_id, body.model_dump(exclude_unset=True)))


@router.post(
    "/alert-sources/{source_id}/rotate",
    response_model=SourceCredentials,
    dependencies=[require(Role.CENTER_ADMIN)],
    summary="New credentials (the old ones stop working at once); shown in this answer only",
)
def rotate_source(
    source_id: Id, body: RotateIn, session: SessionDep, who: CurrentWho, response: Response
) -> SourceCredentials:
    rotated, creds = source.rotate_credentials(session, who, source_id, body.auth)
    response.headers.update(NO_STORE)
    return credentials_out(rotated, creds)


@router.delete(
    "/alert-sources/{source_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    dependencies=[require(Role.CENTER_ADMIN)],
    summary="Delete a source that never posted (one with records: deactivate it instead, 409)",
)
def delete_source(source_id: Id, session: SessionDep, who: CurrentWho) -> Response:
    source.delete_source(session, who, source_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# ---- the webhook ---------------------------------------------------------------------------------------


def _too_large(limit: int) -> errors.PayloadTooLarge:
    return errors.PayloadTooLarge(
        f"the body is larger than the limit of {limit} bytes: send fewer records per post",
        message_zh=f"请求体超过 {limit} 字节的上限，请分批推送",
        limit=limit,
    )


@router.post(
    "/alerts/{source_name}",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Post alerts (one record, a JSON array or JSON lines), signed or with the source's token",
    description=(
        "Authenticate with the Standard Webhooks headers `webhook-id`, `webhook-timestamp` (Unix seconds, "
        "within 5 minutes) and `webhook-signature: v1,<base64 HMAC-SHA256 of id.timestamp.body>`, or with "
        "`Authorization: Bearer <token>`. Every record is stored before the answer: **202** with a result "
        "per record (accepted, duplicate, rejected with the reason); **422** when no record was understood "
        '(kept for inspection all the same); **200** `{"duplicate": true}` for a webhook-id already '
        "received. Refusals: 401 (signature, timestamp or token), 403 (address not allowed, source "
        "inactive), 404 (unknown source), 400 (not JSON), 413 (too large)."
    ),
    responses={200: {"description": "A replayed webhook-id"}, 422: {"description": "No record understood"}},
)
async def post_alerts(
    source_name: Annotated[str, Path(min_length=1, max_length=64)], request: Request
) -> Any:
    received_at = utcnow()  # the portal's clock at arrival: containment latency counts from here
    limit = get_settings().alert_max_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)  # refused at the door, before reading
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit:
            raise _too_large(limit)
    client = request.client.host if request.client else None
    result = await run_in_threadpool(
        ingest.receive_post, source_name, bytes(body), dict(request.headers), client, received_at=received_at
    )
    return JSONResponse(result.body, status_code=result.status)


# ---- alerts ------------------------------------------------------------------------------------------


def alert_out(a: SecurityAlert, source_name: str, *, evidence: bool = False) -> AlertOut:
    assert a.id is not None
    return AlertOut(
        id=a.id,
        source=source_name,
        record_id=a.record_id,
        received_at=a.received_at,
        format=a.format,
        category=a.category,
        severity=a.severity,
        confidence=a.confidence,
        title=a.title,
        external_id=a.external_id,
        resolved=a.resolved,
        addresses=list(a.addresses or []),
        subject_roles=list(a.subject_roles or []),
        target_host=a.target_host,
        state=AlertState(a.state),
        vm_id=a.vm_id,
        match=a.match,
        incident_id=a.incident_id,
        repeats=a.repeats,
        last_repeat_at=a.last_repeat_at,
        processed_at=a.processed_at,
        evidence=dict(a.evidence or {}) if evidence else None,
    )


@router.get(
    "/alerts",
    response_model=AlertList,
    dependencies=[require(*CENTER_READ)],
    summary="Stored alerts, newest first (matched=false: those waiting for a human)",
)
def list_alerts(
    session: SessionDep,
    matched: bool | None = None,
    state: AlertState | None = None,
    source_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    vm_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    incident_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> AlertList:
    f = ingest.AlertFilters(matched, state, source_id, vm_id, incident_id, limit, offset)
    rows, total = ingest.list_alerts(session, f)
    return AlertList(items=[alert_out(a, n) for a, n in rows], total=total, limit=limit, offset=offset)


@router.get("/alerts/{alert_id}", response_model=AlertOut, dependencies=[require(*CENTER_READ)])
def get_alert(alert_id: Id, session: SessionDep) -> AlertOut:
    a, name = ingest.get_alert(session, alert_id)
    return alert_out(a, name, evidence=True)


@router.post(
    "/alerts/{alert_id}/assign",
    response_model=AlertOut,
    dependencies=[require(*CENTER)],
    summary="Match an unmatched alert to a VM by hand (it then joins the VM's incident)",
)
def assign_alert(alert_id: Id, body: AssignIn, session: SessionDep, who: CurrentWho) -> AlertOut:
    row = ingest.assign(session, who, alert_id, body.vm_id)
    _, name = ingest.get_alert(session, alert_id)
    return alert_out(row, name)


def record_out(r: AlertRecord, source_name: str, *, raw: bool = False) -> RecordOut:
    assert r.id is not None
    return RecordOut(
        id=r.id,
        source=source_name,
        received_at=r.received_at,
        webhook_id=r.webhook_id,
        position=r.position,
        format=r.format,
        error_code=r.error_code,
        error=r.error,
        error_field=r.error_field,
        alert_count=r.alert_count,
        raw_truncated=r.raw_truncated,
        raw=r.raw if raw else None,
    )


@router.get(
    "/alert-records",
    response_model=RecordList,
    dependencies=[require(*CENTER_READ)],
    summary="Posted records as received (failed=true: those no parser understood)",
)
def list_records(
    session: SessionDep,
    failed: bool | None = None,
    source_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> RecordList:
    rows, total = ingest.list_records(session, failed=failed, source_id=source_id, limit=limit, offset=offset)
    return RecordList(items=[record_out(r, n) for r, n in rows], total=total, limit=limit, offset=offset)


@router.get(
    "/alert-records/{record_id}",
    response_model=RecordOut,
    dependencies=[require(*CENTER_READ)],
    summary="One posted record, with its raw text",
)
def get_record(record_id: Id, session: SessionDep) -> RecordOut:
    r, name = ingest.get_record(session, record_id)
    return record_out(r, name, raw=True)


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
        actions=lifecycle.available(i.state, role),
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
