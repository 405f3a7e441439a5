"""Reading requests, and the decisions on them: endorsement, approval, rejection, withdrawal, retry.

Every state change is a :data:`vmportal.request.lifecycle.REQUEST` move (compare-and-set: of two
concurrent decisions one wins, the other is a 409 naming the state). Approval re-checks the quota
under the unit's lock with the requests the center has already granted (see
:mod:`vmportal.quota.service`); over quota only a center_admin may approve, with a recorded reason.
Approval and retry enqueue the provisioning task through the outbox, in the same transaction.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlmodel import Session

from policies import combine
from policies.deadline import DeadlineStatus, deadline_status
from policies.quota import QuotaFacts, check_quota, over_quota
from policies.roles import Actor
from vmportal.audit.service import Who, record
from vmportal.center import service as center
from vmportal.jobs import outbox
from vmportal.kit import errors
from vmportal.kit.db import utcnow
from vmportal.kit.scope import ensure_visible
from vmportal.request import mails, repository
from vmportal.request.lifecycle import COMMITTED_STATES, REQUEST, Action, available, rule
from vmportal.request.models import RequestState, VMRequest
from vmportal.request.repository import Part, RequestFilters
from vmportal.request.service.checks import authorize, invalid, pool_for_request, quota_facts, requested_of

PROVISION_TASK = "vmportal.request.provision"


# ---- reading -----------------------------------------------------------------------------------


def deadline_of(req: VMRequest, now: datetime) -> DeadlineStatus | None:
    """Where the request stands against its due time; None once rejected or cancelled (no VM is owed)."""
    if req.state in (RequestState.REJECTED, RequestState.CANCELLED):
        return None
    delivered = req.delivered_at if req.state == RequestState.DELIVERED else None
    return deadline_status(req.due_at, now, delivered)


def get_request(session: Session, actor: Actor, request_id: int) -> VMRequest:
    """The request if ``actor`` may see it; 404 for a missing one and another unit's alike."""
    req = repository.get(session, request_id)
    if req is None:
        raise errors.NotFound("request", request_id)
    ensure_visible(actor, req.unit_id, "request", request_id)
    return req


def list_requests(
    session: Session,
    actor: Actor,
    *,
    state: RequestState | None = None,
    unit_id: int | None = None,
    at_risk: bool = False,
    overdue: bool = False,
    limit: int = 100,
    offset: int = 0,
    now: datetime | None = None,
    sort: str = "-id",
) -> tuple[list[VMRequest], int]:
    """One page of requests, newest first, and how many match in all.

    Unit users see their unit's requests only. ``at_risk`` and ``overdue`` select open requests
    (not delivered, rejected or cancelled) less than 48 h before, or past, their due time; both
    together select either. ``sort``: id, due_at or submitted_at, "-" first for descending; an
    unknown key is the default (newest first)."""
    filters = RequestFilters(state=state, unit_id=unit_id, at_risk=at_risk, overdue=overdue)
    if sort.lstrip("-") not in repository.SORT_KEYS:
        sort = "-id"
    return repository.page(
        session, actor, filters, limit=limit, offset=offset, now=now or utcnow(), sort=sort
    )


def lists_with_units(
    session: Session, actor: Actor, parts: list[Part], *, counted: bool = False
) -> tuple[list[list[repository.Listed]], int | None]:
    """Several lists of the requests ``actor`` may see, each a :class:`Part` (states,
    order, limit), every request with its unit's names (zh, en), in one query; with ``counted``,
    how many are in the first part's states in all. The approval queue's page. An unknown sort
    key is the default (newest first), as in :func:`list_requests`."""
    parts = [p if p.sort.lstrip("-") in repository.SORT_KEYS else replace(p, sort="-id") for p in parts]
    return repository.lists_with_units(session, actor, parts, counted=counted)


def actions_for(session: Session, actor: Actor, requests: list[VMRequest]) -> list[list[str]]:
    """What ``actor`` may do with each request now, for the answer (the center's endorsement
    setting is read once for them all, and the lifecycle asked once per state: a list repeats
    the same two or three states)."""
    endorsement = center.endorsement_required(session)
    by_state: dict[str, list[str]] = {}
    out = []
    for r in requests:
        if r.state not in by_state:
            by_state[r.state] = available(r.state, actor.role, endorsement_required=endorsement)
        out.append(list(by_state[r.state]))
    return out


# ---- decisions ---------------------------------------------------------------------------------


def _move(
    session: Session, req: VMRequest, action: Action, *, endorsement_required: bool = False, **values: Any
) -> RequestState:
    """The request's move under the center's endorsement setting."""
    sources, hint = rule(action, req.state, endorsement_required=endorsement_required)
    return REQUEST.move(session, req, action, sources=sources, hint=hint, **values)


def endorse(session: Session, actor: Actor, who: Who, request_id: int) -> VMRequest:
    """The unit lead endorses their unit's request (only where the center requires it)."""
    authorize(actor, Action.ENDORSE)
    req = get_request(session, actor, request_id)
    before = req.state
    _move(
        session,
        req,
        Action.ENDORSE,
        endorsement_required=center.endorsement_required(session),
        endorsed_by=actor.user_id,
        endorsed_at=utcnow(),
    )
    record(
        session,
        who,
        "request.endorse",
        "vm_request",
        req.id,
        before={"state": before},
        after={"state": req.state},
        unit_id=req.unit_id,
    )
    mails.after_move(session, req)
    return req


def decline(session: Session, actor: Actor, who: Who, request_id: int, reason: str) -> VMRequest:
    """The unit lead declines their unit's request (only where the center requires endorsement),
    with a reason told to the unit's admin: the request ends rejected, decided by the lead, and
    never reaches the center's queue."""
    authorize(actor, Action.DECLINE)
    reason = reason.strip()
    if not reason:
        raise invalid(
            "reason", "required", "declining needs a reason for the unit's admin", "不同意须说明理由"
        )
    req = get_request(session, actor, request_id)
    before = req.state
    _move(
        session,
        req,
        Action.DECLINE,
        endorsement_required=center.endorsement_required(session),
        decided_by=actor.user_id,
        decided_at=utcnow(),
        decision_reason=reason,
    )
    record(
        session,
        who,
        "request.decline",
        "vm_request",
        req.id,
        before={"state": before},
        after={"state": req.state, "reason": reason},
        unit_id=req.unit_id,
    )
    mails.after_move(session, req, by_lead=True)
    return req


def _quota_check(
    session: Session, actor: Actor, req: VMRequest, override_reason: str | None
) -> tuple[bool, QuotaFacts]:
    """Lock, count and decide at approval (and retry): (over quota?, the facts). 403 when refused."""
    facts = quota_facts(session, req.unit_id, requested_of(req), COMMITTED_STATES, exclude=req.id)
    verdict = check_quota(facts, actor.role, override_reason)
    if not verdict.allowed:
        raise errors.PolicyDenied(combine(verdict))
    return bool(over_quota(facts)), facts


def _quota_summary(facts: QuotaFacts) -> dict[str, Any]:
    return {
        "limit": vars(facts.limit),
        "used": vars(facts.used),
        "committed": vars(facts.pending),
        "requested": vars(facts.requested),
    }


def approve(
    session: Session,
    actor: Actor,
    who: Who,
    request_id: int,
    *,
    override_reason: str | None = None,
    pool_id: int | None = None,
) -> VMRequest:
    """The center approves: quota re-checked under the unit's lock (over quota: a center_admin's
    recorded reason), optionally another pool, then provisioning is queued."""
    authorize(actor, Action.APPROVE)
    req = get_request(session, actor, request_id)
    endorsement = center.endorsement_required(session)
    sources, hint = rule(Action.APPROVE, req.state, endorsement_required=endorsement)
    REQUEST.check(Action.APPROVE, req.state, sources=sources, hint=hint)  # 409 before counting
    if pool_id is not None:
        pool_for_request(session, pool_id, req.connection_id)
    reason = (override_reason or "").strip()
    overridden, facts = _quota_check(session, actor, req, reason or None)
    before = req.state
    values: dict[str, Any] = {
        "decided_by": actor.user_id,
        "decided_at": utcnow(),
        "override_reason": reason if overridden else "",
    }
    if pool_id is not None:
        values["pool_id"] = pool_id
    _move(session, req, Action.APPROVE, endorsement_required=endorsement, **values)
    record(
        session,
        who,
        "request.approve",
        "vm_request",
        req.id,
        before={"state": before},
        after={
            "state": req.state,
            "pool_id": req.pool_id,
            "quota_override": overridden,
            "override_reason": req.override_reason,
            "quota": _quota_summary(facts),
        },
        detail=f"quota override: {reason}" if overridden else "",
        unit_id=req.unit_id,
    )
    outbox.enqueue(session, PROVISION_TASK, vm_request_id=req.id)
    mails.after_move(session, req)
    return req


def reject(session: Session, actor: Actor, who: Who, request_id: int, reason: str) -> VMRequest:
    """The center rejects, with a reason told to the unit."""
    authorize(actor, Action.REJECT)
    reason = reason.strip()
    if not reason:
        raise invalid("reason", "required", "a rejection needs a reason for the unit", "驳回须说明理由")
    req = get_request(session, actor, request_id)
    before = req.state
    _move(session, req, Action.REJECT, decided_by=actor.user_id, decided_at=utcnow(), decision_reason=reason)
    record(
        session,
        who,
        "request.reject",
        "vm_request",
        req.id,
        before={"state": before},
        after={"state": req.state, "reason": reason},
        unit_id=req.unit_id,
    )
    mails.after_move(session, req)
    return req


def cancel(session: Session, actor: Actor, who: Who, request_id: int, reason: str = "") -> VMRequest:
    """The unit's admin withdraws a request before the center has decided."""
    authorize(actor, Action.CANCEL)
    req = get_request(session, actor, request_id)
    before = req.state
    _move(session, req, Action.CANCEL, decision_reason=reason.strip())
    record(
        session,
        who,
        "request.cancel",
        "vm_request",
        req.id,
        before={"state": before},
        after={"state": req.state, "reason": reason.strip()},
        unit_id=req.unit_id,
    )
    return req


def retry(
    session: Session, actor: Actor, who: Who, request_id: int, *, override_reason: str | None = None
) -> VMRequest:
    """The center provisions a failed request again. The quota is counted again (the request was
    not counted while failed); an override a center_admin gave at approval still stands."""
    authorize(actor, Action.RETRY)
    req = get_request(session, actor, request_id)
    REQUEST.check(Action.RETRY, req.state)
    reason = (override_reason or "").strip()
    try:
        overridden, _facts = _quota_check(session, actor, req, reason or None)
    except errors.PolicyDenied:
        if reason or not req.override_reason:
            raise
        overridden, reason = True, req.override_reason
    before = req.state
    values: dict[str, Any] = {"provisioning_attempts": req.provisioning_attempts + 1, "failure_reason": ""}
    if overridden:
        values["override_reason"] = reason
    _move(session, req, Action.RETRY, **values)
    record(
        session,
        who,
        "request.retry",
        "vm_request",
        req.id,
        before={"state": before},
        after={"state": req.state, "attempt": req.provisioning_attempts},
        detail=f"quota override: {reason}" if overridden else "",
        unit_id=req.unit_id,
    )
    outbox.enqueue(session, PROVISION_TASK, vm_request_id=req.id)
    return req
