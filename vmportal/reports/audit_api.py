"""Reading and verifying the audit log: center_admin and auditor only.

The routes live with the reports (the auditor's reading), above identity, because they need its role
gate; the log itself (:mod:`vmportal.audit`) sits below every domain that writes into it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query

from policies.roles import Role
from vmportal.audit import service
from vmportal.audit.schemas import AuditEntryOut, AuditPage, VerifyOut
from vmportal.identity.deps import require
from vmportal.kit.http import SessionDep
from vmportal.kit.paging import PageRequest

router = APIRouter(tags=["audit"], dependencies=[require(Role.CENTER_ADMIN, Role.AUDITOR)])


def _aware(moment: datetime | None) -> datetime | None:
    # A time given without a zone is read as UTC, the zone the log is written in.
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


@router.get("/audit", response_model=AuditPage, summary="The audit log, newest first, filtered and paged")
def list_audit(
    session: SessionDep,
    action: Annotated[
        str | None, Query(max_length=64, description="Exact action, or a prefix ending in '.*'")
    ] = None,
    target_type: Annotated[str | None, Query(max_length=40)] = None,
    target_id: Annotated[str | None, Query(max_length=64)] = None,
    unit_id: Annotated[int | None, Query(ge=1)] = None,
    actor: Annotated[str | None, Query(max_length=100, description="Username (or system actor)")] = None,
    result: Annotated[str | None, Query(max_length=20)] = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> AuditPage:
    where = service.AuditFilter(
        action=action,
        target_type=target_type,
        target_id=target_id,
        unit_id=unit_id,
        actor=actor,
        result=result,
        since=_aware(since),
        until=_aware(until),
    )
    rows, total = service.list_entries(session, where, PageRequest(limit=limit, offset=offset))
    return AuditPage(
        items=[AuditEntryOut.model_validate(r, from_attributes=True) for r in rows],
        total=total,
        limit=limit,
        offset=offset,
    )


@router.get(
    "/audit/verify", response_model=VerifyOut, summary="Walk the hash chain; name the first broken link"
)
def verify_audit(session: SessionDep) -> VerifyOut:
    result = service.verify(session)
    return VerifyOut(ok=result.ok, checked=result.checked, broken_at=result.broken_at, reason=result.reason)
