"""Notices from the authorities, findings and their deadlines, forbidden services (Nmap scans,
violations, exemptions, shutdown) and the e-mail outbox.

Who may do what: center staff (admin, operator) enter notices and findings, retest and close findings,
upload scans, grant exemptions and shut VMs down; the auditor reads everything; a unit's users read
their own unit's notices, findings, violations and exemptions (another unit's answer 404), and its
security administrator reports a finding fixed. The e-mail outbox is the center's.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from policies.compromise import Category, Containment
from policies.forbidden_services import ServiceKind
from policies.roles import Actor
from vmportal.compliance.models import (
    Finding,
    FindingState,
    Issuer,
    NoticeState,
    ServiceExemption,
    ServiceScan,
    ServiceViolation,
    ViolationState,
)
from vmportal.compliance.schemas import (
    MAX_FILES,
    MAX_ID,
    MAX_SCAN_BYTES,
    ExemptionIn,
    ExemptionOut,
    FindingFilters,
    FindingIn,
    FindingList,
    FindingOut,
    FixIn,
    IncidentBrief,
    NoteIn,
    NoticeAssignIn,
    NoticeAttachmentOut,
    NoticeConfirmIn,
    NoticeFilters,
    NoticeIn,
    NoticeList,
    NoticeOut,
    NotificationList,
    NotificationOut,
    OverdueReport,
    OverdueUnitOut,
    ReasonIn,
    RetestIn,
    ScanList,
    ScanOut,
    ScanResultOut,
    ShutdownIn,
    ShutdownOut,
    ViolationFilters,
    ViolationList,
    ViolationOut,
)
from vmportal.compliance.service import exemptions, findings, notices, scans, violations
from vmportal.identity.deps import CurrentActor, CurrentWho, require
from vmportal.incidents.rectification import Upload
from vmportal.kit import db, errors
from vmportal.kit.http import SessionDep, file_part
from vmportal.kit.paging import PageRequest
from vmportal.kit.scope import CENTER, CENTER_READ
from vmportal.kit.settings import get_settings
from vmportal.mail import service as notification
from vmportal.mail.models import Notification, NotificationState

router = APIRouter(tags=["security reports"])

PREFIX = "/api/v1"
Id = Annotated[int, Path(ge=1, le=MAX_ID)]
OptId = Annotated[int | None, Query(ge=1, le=MAX_ID)]
Limit = Annotated[int, Query(ge=1, le=500)]
Offset = Annotated[int, Query(ge=0, le=1_000_000)]
_MULTIPART_OVERHEAD = 256 * 1024


def _multipart_required(request: Request, what_en: str, what_zh: str) -> None:
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise errors.UnsupportedMediaType(
            f"send {what_en} as multipart/form-data", message_zh=f"请以 multipart/form-data 提交{what_zh}"
        )


def _limit_body(request: Request, limit: int) -> None:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise errors.PayloadTooLarge(
            f"the request is larger than {limit} bytes",
            message_zh=f"请求超过 {limit} 字节的上限",
            limit=limit,
        )


# ---- findings ------------------------------------------------------------------------------------------


def finding_out(f: Finding, actor: Actor, now: datetime | None = None) -> FindingOut:
    assert f.id is not None
    links = {"self": f"{PREFIX}/findings/{f.id}"}
    if f.vm_id is not None:
        links["vm"] = f"{PREFIX}/vms/{f.vm_id}"
    if f.incident_id is not None:
        links["incident"] = f"{PREFIX}/incidents/{f.incident_id}"
    if f.notice_id is not None:
        links["notice"] = f"{PREFIX}/notices/{f.notice_id}"
    data = f.model_dump()
    data.update(
        overdue=findings.is_overdue(f, now or db.utcnow()),
        actions=findings.actions(f, actor),
        links=links,
    )
    return FindingOut.model_validate(data)


@router.post(
    "/findings",
    response_model=FindingOut,
    status_code=status.HTTP_201_CREATED,
    dependencies=[require(*CENTER)],
    summary="Record a finding on a VM (deadline by severity unless given); the unit is e-mailed",
)
def create_finding(body: FindingIn, session: SessionDep, actor: CurrentActor, who: CurrentWho) -> FindingOut:
    f = findings.create_for_vm(
        session,
        actor,
        who,
        vm_id=body.vm_id,
        unit_id=body.unit_id,
        category=body.category,
        severity=body.severity,
        title=body.title,
        description=body.description,
        target=body.target,
        deadline_at=body.deadline_at,
    )
    return finding_out(f, actor)


@router.get("/findings", response_model=FindingList, summary="Findings, newest first (units: their own)")
def list_findings(
    session: SessionDep,
    actor: CurrentActor,
    unit_id: OptId = None,
    vm_id: OptId = None,
    notice_id: OptId = None,
    state: FindingState | None = None,
    category: Category | None = None,
    overdue: Annotated[bool | None, Query(description="true: open or notified past the deadline")] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> FindingList:
    f = FindingFilters(unit_id, vm_id, state, overdue, category, notice_id)
    page = findings.list_findings(session, actor, f, PageRequest(limit, offset))
    now = db.utcnow()
    return FindingList(
        items=[finding_out(r, actor, now) for r in page.items], total=page.total, limit=limit, offset=offset
    )


@router.get("/findings/{finding_id}", response_model=FindingOut)
def get_finding(finding_id: Id, session: SessionDep, actor: CurrentActor) -> FindingOut:
    return finding_out(findings.find(session, actor, finding_id), actor)


@router.post(
    "/findings/{finding_id}/notify",
    response_model=FindingOut,
    dependencies=[require(*CENTER)],
    summary="Tell the unit (again): e-mail queued, the finding is notified",
)
def notify_finding(
    finding_id: Id, body: NoteIn, session: SessionDep, actor: CurrentActor, who: CurrentWho
) -> FindingOut:
    return finding_out(findings.notify_unit(session, actor, who, finding_id, body.note), actor)


@router.post(
    "/findings/{finding_id}/fix",
    response_model=FindingOut,
    summary="Report the finding fixed, with a note (the unit's security administrator)",
)
def fix_finding(
    finding_id: Id, body: FixIn, session: SessionDep, actor: CurrentActor, who: CurrentWho
) -> FindingOut:
    return finding_out(findings.fix(session, actor, who, finding_id, body.note), actor)


@router.post(
    "/findings/{finding_id}/retest",
    response_model=FindingOut,
    dependencies=[require(*CENTER)],
    summary="Record the center's retest: passed → closed; failed → open again with a new deadline",
)
def retest_finding(
    finding_id: Id, body: RetestIn, session: SessionDep, actor: CurrentActor, who: CurrentWho
) -> FindingOut:
    f = findings.retest(
        session, actor, who, finding_id, passed=body.passed, note=body.note, deadline_at=body.deadline_at
    )
    return finding_out(f, actor)


@router.post(
    "/findings/{finding_id}/close",
    response_model=FindingOut,
    dependencies=[require(*CENTER)],
    summary="Close a finding without a retest (withdrawn, not applicable), with the reason",
)
def close_finding(
    finding_id: Id, body: ReasonIn, session: SessionDep, actor: CurrentActor, who: CurrentWho
) -> FindingOut:
    return finding_out(findings.close(session, actor, who, finding_id, body.reason), actor)


@router.get(
    "/reports/findings/overdue",
    response_model=OverdueReport,
    summary="Overdue findings per unit, most overdue units first (units: their own)",
)
def overdue_report(session: SessionDep, actor: CurrentActor) -> OverdueReport:
    now = db.utcnow()
    groups = findings.overdue_by_unit(session, actor, now)
    return OverdueReport(
        generated_at=now,
        total=sum(len(g.findings) for g in groups),
        units=[
            OverdueUnitOut(
                unit_id=g.unit_id,
                unit_code=g.unit_code,
                unit_name_zh=g.unit_name_zh,
                count=len(g.findings),
                oldest_deadline=g.oldest_deadline,
                findings=[finding_out(f, actor, now) for f in g.findings],
            )
            for g in groups
        ],
    )


# ---- notices -------------------------------------------------------------------------------------------


def notice_out(view: notices.NoticeView, actor: Actor) -> NoticeOut:
    n, incident = view.notice, view.incident
    assert n.id is not None
    now = db.utcnow()
    links = {"self": f"{PREFIX}/notices/{n.id}", "findings": f"{PREFIX}/findings?notice_id={n.id}"}
    if n.incident_id is not None:
        links["incident"] = f"{PREFIX}/incidents/{n.incident_id}"
    data = n.model_dump()
    data.update(
        unit_code=view.unit_code,
        suggested_action=view.suggested_action.value,
        incident=(
            IncidentBrief(
                id=incident.id or 0,
                state=incident.state,
                containment_state=incident.containment_state,
                action=incident.action,
                link=f"{PREFIX}/incidents/{incident.id}",
            )
            if incident is not None
            else None
        ),
        findings=[finding_out(f, actor, now) for f in view.findings],
        attachments=[
            NoticeAttachmentOut(
                index=i,
                filename=str(a.get("filename", "")),
                content_type=str(a.get("content_type", "")),
                size=int(a.get("size", 0)),
                sha256=str(a.get("sha256", "")),
                link=f"{PREFIX}/notices/{n.id}/attachments/{i}",
            )
            for i, a in enumerate(view.attachments)
        ],
        links=links,
    )
    return NoticeOut.model_validate(data)


def _inline_schema(model: type[NoticeIn]) -> dict[str, Any]:
    """``model``'s JSON schema with its enumerations written in place: the body is read by hand (JSON or
    multipart), so FastAPI does not list the model under ``components``, and a ``$ref`` to it would
    point nowhere (client generators and Swagger UI stop on it)."""
    schema = model.model_json_schema()
    defs: dict[str, Any] = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return resolve(
                    {**defs[ref.removeprefix("#/$defs/")], **{k: v for k, v in node.items() if k != "$ref"}}
                )
            return {k: resolve(v) for k, v in node.items()}
        if isinstance(node, list):
            return [resolve(v) for v in node]
        return node

    return resolve(schema)


_NOTICE_FORM: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": _inline_schema(NoticeIn)},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "description": "The fields of NoticeIn as form fields, plus evidence files",
                    "required": ["issuer", "notice_number", "event_type"],
                    "properties": {
                        **{name: {"type": "string"} for name in NoticeIn.model_fields},
                        "files": {
                            "type": "array",
                            "maxItems": MAX_FILES,
                            "items": {"type": "string", "format": "binary"},
                            "description": "Screenshots, URL lists: PDF, PNG, JPEG or text; "
                            "VMPORTAL_UPLOAD_MAX_BYTES each",
                        },
                    },
                }
            },
        },
    }
}


def _notice_input(values: dict[str, Any]) -> NoticeIn:
    try:
        return NoticeIn.model_validate(values)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors()) from None


@router.post(
    "/notices",
    response_model=NoticeOut,
    status_code=status.HTTP_201_CREATED,
    dependencies=[require(*CENTER)],
    openapi_extra=_NOTICE_FORM,
    summary="Enter a notice (JSON, or multipart with evidence files): incident (held) + finding + e-mail",
)
async def create_notice(
    request: Request, session: SessionDep, actor: CurrentActor, who: CurrentWho
) -> NoticeOut:
    settings = get_settings()
    content_type = request.headers.get("content-type", "")
    uploads: list[Upload] = []
    form = None
    if content_type.startswith("multipart/form-data"):
        _limit_body(request, settings.upload_max_bytes * MAX_FILES + _MULTIPART_OVERHEAD)
        form = await request.form(max_files=MAX_FILES + 1, max_fields=30)
        # An empty form field is an omitted one (browsers send every field of the form).
        values = {k: v for k, v in form.multi_items() if isinstance(v, str) and v != ""}
        uploads = [
            Upload(part.filename, part.content_type or "", part.file)
            for part in form.getlist("files")
            if isinstance(part, UploadFile)
        ]
    elif content_type.startswith("application/json") or not content_type:
        _limit_body(request, 256 * 1024)
        try:
            values = await request.json()
        except ValueError:
            raise errors.BadRequest(
                "request body is not valid JSON", message_zh="请求体不是合法的 JSON"
            ) from None
        if not isinstance(values, dict):
            raise errors.InvalidField(
                "body", "object", "send one notice as a JSON object", message_zh="请提交一个JSON对象"
            )
    else:
        raise errors.UnsupportedMediaType(
            "send the notice as application/json or multipart/form-data",
            message_zh="请以 application/json 或 multipart/form-data 提交通报",
        )
    try:
        data = _notice_input(values)

        def enter() -> NoticeOut:
            return notice_out(notices.create_notice(session, actor, who, data, uploads, settings), actor)

        return await run_in_threadpool(enter)
    finally:
        if form is not None:
            await form.close()


@router.get("/notices", response_model=NoticeList, summary="Notices, newest first (units: their own)")
def list_notices(
    session: SessionDep,
    actor: CurrentActor,
    state: NoticeState | None = None,
    issuer: Issuer | None = None,
    unit_id: OptId = None,
    vm_id: OptId = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> NoticeList:
    page = notices.list_notices(
        session, actor, NoticeFilters(state, unit_id, vm_id, issuer), PageRequest(limit, offset)
    )
    items = [notice_out(view, actor) for view in page.items]
    return NoticeList(items=items, total=page.total, limit=limit, offset=offset)


@router.get("/notices/{notice_id}", response_model=NoticeOut)
def get_notice(notice_id: Id, session: SessionDep, actor: CurrentActor) -> NoticeOut:
    return notice_out(notices.get_notice(session, actor, notice_id), actor)


@router.post(
    "/notices/{notice_id}/confirm",
    response_model=NoticeOut,
    status_code=status.HTTP_202_ACCEPTED,
    dependencies=[require(*CENTER)],
    summary="Confirm the notice: its incident's containment runs (default: the suggested action)",
)
def confirm_notice(
    notice_id: Id, body: NoticeConfirmIn, session: SessionDep, actor: CurrentActor, who: CurrentWho
) -> NoticeOut:
    action = Containment(body.action.value) if body.action is not None else None
    return notice_out(notices.confirm(session, actor, who, notice_id, action, body.reason), actor)


@router.post(
    "/notices/{notice_id}/assign",
    response_model=NoticeOut,
    dependencies=[require(*CENTER)],
    summary="Name the VM of a notice the inventory did not match: its incident (held) and finding follow",
)
def assign_notice(
    notice_id: Id, body: NoticeAssignIn, session: SessionDep, actor: CurrentActor, who: CurrentWho
) -> NoticeOut:
    return notice_out(notices.assign(session, actor, who, notice_id, body.vm_id), actor)


@router.get(
    "/notices/{notice_id}/attachments/{index}",
    response_class=FileResponse,
    summary="Download an evidence file of a notice",
)
def download_notice_attachment(
    notice_id: Id, index: Annotated[int, Path(ge=0, le=100)], session: SessionDep, actor: CurrentActor
) -> FileResponse:
    found = notices.attachment_file(session, actor, notice_id, index)
    return FileResponse(found.path, media_type=found.content_type, filename=found.filename)


# ---- forbidden services ------------------------------------------------------------------------------


def violation_out(v: ServiceViolation) -> ViolationOut:
    assert v.id is not None
    data = v.model_dump()
    data.update(
        open=v.open_key is not None,
        links={"self": f"{PREFIX}/violations/{v.id}", "vm": f"{PREFIX}/vms/{v.vm_id}"},
    )
    return ViolationOut.model_validate(data)


def scan_out(s: ServiceScan) -> ScanOut:
    return ScanOut.model_validate(s.model_dump())


def exemption_out(e: ServiceExemption, closed: list[int] | None = None) -> ExemptionOut:
    data = e.model_dump()
    data.update(kind=e.service, active=exemptions.is_active(e, db.utcnow()), closed_violations=closed or [])
    return ExemptionOut.model_validate(data)


_SCAN_FORM: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary", "description": "Nmap -oX report"}
                    },
                }
            }
        },
    }
}


@router.post(
    "/scans",
    response_model=ScanResultOut,
    status_code=status.HTTP_201_CREATED,
    dependencies=[require(*CENTER)],
    openapi_extra=_SCAN_FORM,
    summary="Upload an Nmap XML report (multipart: file): forbidden services become violations, once each",
)
async def upload_scan(
    request: Request, session: SessionDep, actor: CurrentActor, who: CurrentWho
) -> ScanResultOut:
    _multipart_required(request, "the Nmap report", "Nmap扫描报告")
    _limit_body(request, MAX_SCAN_BYTES + _MULTIPART_OVERHEAD)
    form = await request.form(max_files=1, max_fields=5, max_part_size=MAX_SCAN_BYTES + 1)
    try:
        part = file_part(form)
        data = await part.read(MAX_SCAN_BYTES + 1)

        def upload() -> ScanResultOut:
            outcome = scans.upload_scan(session, actor, who, part.filename or "", data)
            return ScanResultOut(
                scan=scan_out(outcome.scan),
                raised=[violation_out(v) for v in outcome.raised],
                still_open=[violation_out(v) for v in outcome.still_open],
                resolved=[violation_out(v) for v in outcome.resolved],
                exempted=outcome.exempted,
                unmatched_hosts=outcome.unmatched_hosts,
            )

        return await run_in_threadpool(upload)
    finally:
        await form.close()


@router.get("/scans", response_model=ScanList, dependencies=[require(*CENTER_READ)])
def list_scans(session: SessionDep, limit: Limit = 50, offset: Offset = 0) -> ScanList:
    page = scans.list_scans(session, PageRequest(limit, offset))
    return ScanList(items=[scan_out(s) for s in page.items], total=page.total, limit=limit, offset=offset)


@router.get("/scans/{scan_id}", response_model=ScanOut, dependencies=[require(*CENTER_READ)])
def get_scan(scan_id: Id, session: SessionDep) -> ScanOut:
    return scan_out(scans.get_scan(session, scan_id))


@router.get(
    "/violations", response_model=ViolationList, summary="Forbidden-service violations (units: their own)"
)
def list_violations(
    session: SessionDep,
    actor: CurrentActor,
    state: ViolationState | None = None,
    open: Annotated[bool | None, Query(description="true: still this appearance (open or shut down)")] = None,
    vm_id: OptId = None,
    unit_id: OptId = None,
    scan_id: OptId = None,
    service: ServiceKind | None = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> ViolationList:
    f = ViolationFilters(state, open, vm_id, unit_id, scan_id, service)
    page = violations.list_violations(session, actor, f, PageRequest(limit, offset))
    items = [violation_out(v) for v in page.items]
    return ViolationList(items=items, total=page.total, limit=limit, offset=offset)


@router.get("/violations/{violation_id}", response_model=ViolationOut)
def get_violation(violation_id: Id, session: SessionDep, actor: CurrentActor) -> ViolationOut:
    return violation_out(violations.get_violation(session, actor, violation_id))


@router.post(
    "/violations/{violation_id}/shutdown",
    response_model=ShutdownOut,
    status_code=status.HTTP_202_ACCEPTED,
    dependencies=[require(*CENTER)],
    summary="Shut the VM down over an open violation (agreement §6): a power-off through the power service",
)
def shutdown_violation(
    violation_id: Id, body: ShutdownIn, session: SessionDep, actor: CurrentActor, who: CurrentWho
) -> ShutdownOut:
    done = violations.shutdown(session, actor, who, violation_id, body.reason)
    links = {"vm": f"{PREFIX}/vms/{done.violation.vm_id}"}
    if done.operation_id is not None:
        links["operation"] = f"{PREFIX}/operations/{done.operation_id}"
    return ShutdownOut(violation=violation_out(done.violation), operation_id=done.operation_id, links=links)


@router.post(
    "/exemptions",
    response_model=ExemptionOut,
    status_code=status.HTTP_201_CREATED,
    dependencies=[require(*CENTER)],
    summary="Approve a service on a VM: it raises no violation, and matching open ones close",
)
def grant_exemption(
    body: ExemptionIn, session: SessionDep, actor: CurrentActor, who: CurrentWho
) -> ExemptionOut:
    exemption, closed = exemptions.grant_exemption(
        session,
        actor,
        who,
        vm_id=body.vm_id,
        kind=body.kind,
        reason=body.reason,
        port=body.port,
        protocol=body.protocol,
        expires_at=body.expires_at,
    )
    return exemption_out(exemption, [v.id for v in closed if v.id is not None])


@router.get("/exemptions", response_model=list[ExemptionOut], summary="Exemptions (units: their own)")
def list_exemptions(
    session: SessionDep, actor: CurrentActor, vm_id: OptId = None, active: bool | None = None
) -> list[ExemptionOut]:
    return [exemption_out(e) for e in exemptions.list_exemptions(session, actor, vm_id=vm_id, active=active)]


@router.delete(
    "/exemptions/{exemption_id}",
    response_model=ExemptionOut,
    dependencies=[require(*CENTER)],
    summary="Revoke an exemption: the next scan raises the service again",
)
def revoke_exemption(
    exemption_id: Id, session: SessionDep, actor: CurrentActor, who: CurrentWho
) -> ExemptionOut:
    return exemption_out(exemptions.revoke_exemption(session, actor, who, exemption_id))


# ---- the e-mail outbox ---------------------------------------------------------------------------------


def notification_out(n: Notification) -> NotificationOut:
    return NotificationOut.model_validate(n.model_dump())


@router.get(
    "/notifications",
    response_model=NotificationList,
    dependencies=[require(*CENTER_READ)],
    summary="E-mails queued, sent, waiting for a retry or failed, newest first",
)
def list_notifications(
    session: SessionDep,
    state: NotificationState | None = None,
    unit_id: OptId = None,
    kind: Annotated[str | None, Query(max_length=40)] = None,
    related_type: Annotated[str | None, Query(max_length=40)] = None,
    related_id: Annotated[str | None, Query(max_length=64)] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> NotificationList:
    rows, total = notification.list_notifications(
        session,
        state=state,
        unit_id=unit_id,
        kind=kind,
        related_type=related_type,
        related_id=related_id,
        limit=limit,
        offset=offset,
    )
    return NotificationList(
        items=[notification_out(n) for n in rows], total=total, limit=limit, offset=offset
    )


@router.post(
    "/notifications/{notification_id}/resend",
    response_model=NotificationOut,
    status_code=status.HTTP_202_ACCEPTED,
    dependencies=[require(*CENTER)],
    summary="Send a failed (or waiting) e-mail again now, with a fresh count of attempts",
)
def resend_notification(notification_id: Id, session: SessionDep) -> NotificationOut:
    return notification_out(notification.resend(session, notification_id))
