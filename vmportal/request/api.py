"""VM requests (``/requests``): submit, endorse, approve or reject, cancel, retry, list and read.

Errors: 422 naming the field; 403 with the deciding rule (``purpose``, ``paperwork``, ``quota``) and
both messages, or naming the role that may act; 404 for another unit's request or system; 409
naming the state a request is in when the action does not fit it.
"""

from __future__ import annotations

from fastapi import APIRouter, Query, status
from sqlmodel import Session

from policies.roles import Actor
from vmportal.identity.deps import CurrentActor, CurrentWho
from vmportal.kit.db import utcnow
from vmportal.kit.http import SessionDep
from vmportal.request import service
from vmportal.request.models import RequestState, VMRequest
from vmportal.request.schemas import (
    ApproveIn,
    CancelIn,
    DeclineIn,
    RejectIn,
    RequestIn,
    RequestOut,
    RequestPage,
    RetryIn,
)

router = APIRouter(tags=["requests"])


def request_out(req: VMRequest, actions: list[str]) -> RequestOut:
    assert req.id is not None
    return RequestOut(
        id=req.id,
        unit_id=req.unit_id,
        system_id=req.system_id,
        requested_by=req.requested_by,
        state=RequestState(req.state),
        purpose=req.purpose,
        beneficiary=req.beneficiary,
        system_name=req.system_name,
        description=req.description,
        hostname=req.hostname,
        connection_id=req.connection_id,
        template_ref=req.template_ref,
        template_name=req.template_name,
        vcpus=req.vcpus,
        memory_gib=req.memory_gib,
        disk_gib=req.disk_gib,
        pool_id=req.pool_id,
        submitted_at=req.submitted_at,
        due_at=req.due_at,
        deadline_status=service.deadline_of(req, utcnow()),
        endorsed_by=req.endorsed_by,
        endorsed_at=req.endorsed_at,
        decided_by=req.decided_by,
        decided_at=req.decided_at,
        decision_reason=req.decision_reason,
        override_reason=req.override_reason,
        provisioning_attempts=req.provisioning_attempts,
        failure_reason=req.failure_reason,
        delivered_at=req.delivered_at,
        vm_id=req.vm_id,
        updated_at=req.updated_at,
        actions=actions,
    )


def _out(session: Session, req: VMRequest, actor: Actor) -> RequestOut:
    return request_out(req, service.actions_for(session, actor, [req])[0])


@router.post(
    "/requests",
    status_code=status.HTTP_201_CREATED,
    summary="Request a VM for your unit (unit_admin); decided by rules purpose, paperwork and quota",
)
def submit(body: RequestIn, session: SessionDep, actor: CurrentActor, who: CurrentWho) -> RequestOut:
    return _out(session, service.submit(session, actor, who, body), actor)


@router.get("/requests", summary="List requests (unit users: their unit's only)")
def list_requests(
    session: SessionDep,
    actor: CurrentActor,
    state: RequestState | None = None,
    unit_id: int | None = Query(None, gt=0),
    at_risk: bool = Query(False, description="Open requests due within 48 hours."),
    overdue: bool = Query(False, description="Open requests past their due time."),
    limit: int = Query(100, ge=1, le=1000),
    offset: int = Query(0, ge=0),
) -> RequestPage:
    rows, total = service.list_requests(
        session,
        actor,
        state=state,
        unit_id=unit_id,
        at_risk=at_risk,
        overdue=overdue,
        limit=limit,
        offset=offset,
    )
    actions = service.actions_for(session, actor, rows)
    return RequestPage(
        items=[request_out(r, a) for r, a in zip(rows, actions, strict=True)],
        total=total,
        limit=limit,
        offset=offset,
    )


@router.get("/requests/{request_id}", summary="One request, with its due time and deadline status")
def get_request(request_id: int, session: SessionDep, actor: CurrentActor) -> RequestOut:
    return _out(session, service.get_request(session, actor, request_id), actor)


@router.post("/requests/{request_id}/endorse", summary="Endorse your unit's request (unit_lead)")
def endorse(request_id: int, session: SessionDep, actor: CurrentActor, who: CurrentWho) -> RequestOut:
    return _out(session, service.endorse(session, actor, who, request_id), actor)


@router.post(
    "/requests/{request_id}/decline",
    summary="Decline your unit's request, with a reason (unit_lead, where the center requires endorsement)",
)
def decline(
    request_id: int, body: DeclineIn, session: SessionDep, actor: CurrentActor, who: CurrentWho
) -> RequestOut:
    return _out(session, service.decline(session, actor, who, request_id, body.reason), actor)


@router.post(
    "/requests/{request_id}/approve",
    summary="Approve (center); over quota only a center_admin, with override_reason; starts provisioning",
)
def approve(
    request_id: int,
    session: SessionDep,
    actor: CurrentActor,
    who: CurrentWho,
    body: ApproveIn | None = None,
) -> RequestOut:
    body = body or ApproveIn()
    req = service.approve(
        session, actor, who, request_id, override_reason=body.override_reason, pool_id=body.pool_id
    )
    return _out(session, req, actor)


@router.post("/requests/{request_id}/reject", summary="Reject with a reason (center)")
def reject(
    request_id: int, body: RejectIn, session: SessionDep, actor: CurrentActor, who: CurrentWho
) -> RequestOut:
    return _out(session, service.reject(session, actor, who, request_id, body.reason), actor)


@router.post("/requests/{request_id}/cancel", summary="Withdraw your unit's request before the decision")
def cancel(
    request_id: int,
    session: SessionDep,
    actor: CurrentActor,
    who: CurrentWho,
    body: CancelIn | None = None,
) -> RequestOut:
    reason = body.reason if body is not None else ""
    return _out(session, service.cancel(session, actor, who, request_id, reason), actor)


@router.post("/requests/{request_id}/retry", summary="Provision a failed request again (center)")
def retry(
    request_id: int,
    session: SessionDep,
    actor: CurrentActor,
    who: CurrentWho,
    body: RetryIn | None = None,
) -> RequestOut:
    override = body.override_reason if body is not None else None
    return _out(session, service.retry(session, actor, who, request_id, override_reason=override), actor)
