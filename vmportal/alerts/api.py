"""Alert intake: alert sources, the alert webhook, the alerts and their raw records.

The center_admin manages alert sources; center staff (admin, operator) handle alerts (assign); the
auditor reads everything. Alert senders authenticate with their source's own secret or token, not a
user's. What becomes of a matched alert (incidents, containment) is :mod:`vmportal.incidents`.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from starlette.requests import ClientDisconnect

from policies.roles import Role
from vmportal.alerts import ingest
from vmportal.alerts import sources as source
from vmportal.alerts.schemas import (
    AlertList,
    AlertOut,
    AssignIn,
    RecordList,
    RecordOut,
    RotateIn,
    SourceCreate,
    SourceCredentials,
    SourceOut,
    SourceUpdate,
)
from vmportal.identity.deps import CurrentUser, CurrentWho, require
from vmportal.incidents.models import (
    AlertRecord,
    AlertSource,
    AlertState,
    SecurityAlert,
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
    try:
        async for chunk in request.stream():
            body.extend(chunk)
            if len(body) > limit:
                raise _too_large(limit)
    except ClientDisconnect:
        # The body guard ended the read (it has answered 413 itself) or the sender went away:
        # nothing was taken in, and there is nobody to answer.
        return Response(status_code=status.HTTP_413_CONTENT_TOO_LARGE)
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
