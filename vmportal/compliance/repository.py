"""Every query of compliance: findings, notices, scans, violations and exemptions, and the few reads of
lower domains' tables that matching a notice or a scan needs (VM addresses, information systems).

A unit's users see their own unit's records only: lists are filtered with :func:`kit.scope.visible`,
one record is fetched through :func:`kit.scope.ensure_visible` (another unit's answers 404, as one
that does not exist). Lists are newest first (the id, unique, so pages never overlap) and paged with
:mod:`kit.paging`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.sql import ColumnElement
from sqlmodel import Session, SQLModel, col, or_, select

from policies.roles import Actor
from vmportal.compliance.models import ISSUER_KIND
from vmportal.compliance.schemas import FindingFilters, NoticeFilters, ViolationFilters
from vmportal.incidents.models import (
    Finding,
    FindingState,
    Incident,
    Notice,
    ServiceExemption,
    ServiceScan,
    ServiceViolation,
)
from vmportal.kit import errors, paging
from vmportal.kit.scope import ensure_visible, visible
from vmportal.kit.sql import insert_or_nothing
from vmportal.unit.models import InformationSystem, Unit
from vmportal.vm.models import VM, Lifecycle

M = TypeVar("M", bound=SQLModel)

#: The states in which a finding waits for its unit (lifecycle.AWAITING_UNIT, as stored values).
_AWAITING_UNIT = (FindingState.OPEN.value, FindingState.NOTIFIED.value)


def _page(session: Session, statement: Any, page: paging.PageRequest) -> tuple[list[Any], int]:
    rows, total = paging.page(session, statement, page)
    return [row[0] for row in rows], total


def _locked(session: Session, model: type[M], ident: int) -> M | None:
    """``model`` row ``ident`` under a row lock, read afresh (not the copy the session holds)."""
    statement = (
        select(model)
        .where(col(model.id) == ident)  # type: ignore[attr-defined]
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return session.exec(statement).first()


# ---- lower domains' records --------------------------------------------------------------------------


def vm(session: Session, vm_id: int) -> VM | None:
    with session.no_autoflush:  # read while a new finding or notice is half-filled in the session
        return session.get(VM, vm_id)


def unit(session: Session, unit_id: int) -> Unit | None:
    return session.get(Unit, unit_id)


def unit_codes(session: Session, unit_ids: Iterable[int | None]) -> dict[int, str]:
    ids = sorted({i for i in unit_ids if i is not None})
    if not ids:
        return {}
    rows = session.exec(select(Unit.id, Unit.code).where(col(Unit.id).in_(ids)))
    return {ident: code for ident, code in rows if ident is not None}


def information_systems(session: Session) -> Sequence[InformationSystem]:
    return session.exec(select(InformationSystem)).all()


def incident(session: Session, incident_id: int) -> Incident | None:
    return session.get(Incident, incident_id)


def incidents(session: Session, incident_ids: Iterable[int | None]) -> dict[int, Incident]:
    ids = [i for i in incident_ids if i is not None]
    if not ids:
        return {}
    rows = session.exec(select(Incident).where(col(Incident.id).in_(ids)))
    return {i.id: i for i in rows if i.id is not None}


def active_vm_addresses(session: Session) -> list[tuple[int | None, str | None, list[str]]]:
    """(id, delivered address, inventory IPs) of every active VM."""
    rows = session.exec(
        select(VM.id, VM.ip_address, VM.ips).where(col(VM.lifecycle) == Lifecycle.ACTIVE.value)
    ).all()
    return [(ident, address, list(ips or [])) for ident, address, ips in rows]


# ---- findings -----------------------------------------------------------------------------------------


def visible_finding(session: Session, actor: Actor, finding_id: int) -> Finding:
    finding = session.get(Finding, finding_id)
    if finding is None:
        raise errors.NotFound("finding", finding_id)
    ensure_visible(actor, finding.unit_id, "finding", finding_id)
    return finding


def lock_finding(session: Session, finding_id: int) -> Finding:
    finding = _locked(session, Finding, finding_id)
    if finding is None:
        raise errors.NotFound("finding", finding_id)
    return finding


def finding(session: Session, finding_id: int) -> Finding | None:
    return session.get(Finding, finding_id)


def overdue_condition(now: datetime) -> ColumnElement[bool]:
    """Open or notified past the deadline (fixed ones wait for the center, not the unit)."""
    return (
        col(Finding.state).in_(_AWAITING_UNIT)
        & col(Finding.deadline_at).is_not(None)
        & (col(Finding.deadline_at) < now)
    )


def findings(
    session: Session, actor: Actor, f: FindingFilters, now: datetime, page: paging.PageRequest
) -> tuple[list[Finding], int]:
    statement = visible(select(Finding), actor, col(Finding.unit_id))
    if f.unit_id is not None:
        statement = statement.where(col(Finding.unit_id) == f.unit_id)
    if f.vm_id is not None:
        statement = statement.where(col(Finding.vm_id) == f.vm_id)
    if f.state is not None:
        statement = statement.where(col(Finding.state) == f.state.value)
    if f.category is not None:
        statement = statement.where(col(Finding.category) == f.category.value)
    if f.notice_id is not None:
        statement = statement.where(col(Finding.notice_id) == f.notice_id)
    if f.overdue is True:
        statement = statement.where(overdue_condition(now))
    elif f.overdue is False:
        statement = statement.where(~overdue_condition(now))
    return _page(session, _finding_order(statement, page.sort), page)


#: The findings list's sort keys (``PageRequest.sort``, "-key" descending); newest first by default.
FINDING_SORTS = ("id", "deadline_at", "severity")
_SEVERITY_RANK = sa.case(
    {"critical": 0, "high": 1, "medium": 2, "low": 3}, value=col(Finding.severity), else_=4
)


def _finding_order(statement: Any, sort: str | None) -> Any:
    key = sort if sort and sort.lstrip("-") in FINDING_SORTS else "-id"
    descending = key.startswith("-")
    tiebreak = col(Finding.id).desc() if descending else col(Finding.id).asc()
    match key.lstrip("-"):
        case "deadline_at":
            # A finding without a deadline comes after every dated one, either way round.
            column = col(Finding.deadline_at)
            first = (column.desc() if descending else column.asc()).nulls_last()
        case "severity":
            first = _SEVERITY_RANK.desc() if descending else _SEVERITY_RANK.asc()
        case _:
            return statement.order_by(tiebreak)
    return statement.order_by(first, tiebreak)


def overdue_findings(
    session: Session, actor: Actor, now: datetime
) -> Sequence[tuple[Finding, str | None, str | None]]:
    """(finding, unit code, unit name) of every overdue finding ``actor`` sees, earliest deadline first."""
    statement = (
        select(Finding, Unit.code, Unit.name_zh)
        .outerjoin(Unit, col(Unit.id) == col(Finding.unit_id))
        .where(overdue_condition(now))
        .order_by(col(Finding.deadline_at), col(Finding.id))
    )
    return session.exec(visible(statement, actor, col(Finding.unit_id))).all()


def open_findings_told_by(
    session: Session, related_type: str, related_id: int, unit_id: int
) -> Sequence[Finding]:
    """The open findings of ``unit_id`` a mail about a finding, or about a notice, told the unit of."""
    about = col(Finding.id) if related_type == "finding" else col(Finding.notice_id)
    return session.exec(
        select(Finding).where(
            about == related_id,
            col(Finding.state) == FindingState.OPEN.value,
            col(Finding.unit_id) == unit_id,
        )
    ).all()


def findings_due_by(session: Session, moment: datetime) -> list[int]:
    """The findings waiting for a unit whose deadline comes by ``moment``, earliest first."""
    rows = session.exec(
        select(Finding.id)
        .where(
            col(Finding.state).in_(_AWAITING_UNIT),
            col(Finding.unit_id).is_not(None),
            col(Finding.deadline_at).is_not(None),
            col(Finding.deadline_at) <= moment,
        )
        .order_by(col(Finding.deadline_at))
    ).all()
    return [i for i in rows if i is not None]


def findings_of_notices(session: Session, notice_ids: list[int]) -> dict[int, list[Finding]]:
    out: dict[int, list[Finding]] = {i: [] for i in notice_ids}
    if notice_ids:
        for f in session.exec(
            select(Finding).where(col(Finding.notice_id).in_(notice_ids)).order_by(col(Finding.id))
        ):
            if f.notice_id is not None:
                out.setdefault(f.notice_id, []).append(f)
    return out


# ---- notices ----------------------------------------------------------------------------------------


def visible_notice(session: Session, actor: Actor, notice_id: int) -> Notice:
    notice = session.get(Notice, notice_id)
    if notice is None:
        raise errors.NotFound("notice", notice_id)
    ensure_visible(actor, notice.unit_id, "notice", notice_id)
    return notice


def notice_numbered(session: Session, issuer_kind: str, number: str) -> Notice | None:
    return session.exec(
        select(Notice).where(col(Notice.issuer_kind) == issuer_kind, col(Notice.notice_number) == number)
    ).first()


def notices(
    session: Session,
    actor: Actor,
    f: NoticeFilters,
    page: paging.PageRequest,
) -> tuple[list[Notice], int]:
    statement = visible(select(Notice), actor, col(Notice.unit_id))
    if f.state is not None:
        statement = statement.where(col(Notice.state) == f.state.value)
    if f.unit_id is not None:
        statement = statement.where(col(Notice.unit_id) == f.unit_id)
    if f.vm_id is not None:
        statement = statement.where(col(Notice.vm_id) == f.vm_id)
    if f.issuer is not None:
        statement = statement.where(col(Notice.issuer_kind) == ISSUER_KIND[f.issuer])
    return _page(session, statement.order_by(col(Notice.id).desc()), page)


# ---- scans and violations -------------------------------------------------------------------------


def scan(session: Session, scan_id: int) -> ServiceScan:
    found = session.get(ServiceScan, scan_id)
    if found is None:
        raise errors.NotFound("scan", scan_id)
    return found


def scans(session: Session, page: paging.PageRequest) -> tuple[list[ServiceScan], int]:
    return _page(session, select(ServiceScan).order_by(col(ServiceScan.id).desc()), page)


def violation_holding(session: Session, open_key: str) -> ServiceViolation | None:
    """The violation that holds ``open_key`` (this appearance of the service), if any."""
    return session.exec(select(ServiceViolation).where(col(ServiceViolation.open_key) == open_key)).first()


def add_violation(session: Session, violation: ServiceViolation) -> ServiceViolation | None:
    """Write a new violation; None when a concurrent upload raised the same appearance a moment ago."""
    new_id = insert_or_nothing(session, violation, ["open_key"])
    return session.get(ServiceViolation, new_id) if new_id is not None else None


def holding_violations(
    session: Session, vm_ids: Iterable[int], *, service: str | None = None
) -> Sequence[ServiceViolation]:
    """The violations of these VMs still in their appearance (open or shut down), of one kind or any."""
    statement = select(ServiceViolation).where(
        col(ServiceViolation.vm_id).in_(list(vm_ids)), col(ServiceViolation.open_key).is_not(None)
    )
    if service is not None:
        statement = statement.where(col(ServiceViolation.service) == service)
    return session.exec(statement).all()


def visible_violation(session: Session, actor: Actor, violation_id: int) -> ServiceViolation:
    found = session.get(ServiceViolation, violation_id)
    if found is None:
        raise errors.NotFound("violation", violation_id)
    ensure_visible(actor, found.unit_id, "violation", violation_id)
    return found


def lock_violation(session: Session, violation_id: int) -> ServiceViolation:
    found = _locked(session, ServiceViolation, violation_id)
    if found is None:
        raise errors.NotFound("violation", violation_id)
    return found


def violations(
    session: Session, actor: Actor, f: ViolationFilters, page: paging.PageRequest
) -> tuple[list[ServiceViolation], int]:
    statement = visible(select(ServiceViolation), actor, col(ServiceViolation.unit_id))
    if f.state is not None:
        statement = statement.where(col(ServiceViolation.state) == f.state.value)
    if f.open is not None:
        held = col(ServiceViolation.open_key)
        statement = statement.where(held.is_not(None) if f.open else held.is_(None))
    if f.vm_id is not None:
        statement = statement.where(col(ServiceViolation.vm_id) == f.vm_id)
    if f.unit_id is not None:
        statement = statement.where(col(ServiceViolation.unit_id) == f.unit_id)
    if f.scan_id is not None:
        statement = statement.where(
            or_(col(ServiceViolation.scan_id) == f.scan_id, col(ServiceViolation.last_scan_id) == f.scan_id)
        )
    if f.service is not None:
        statement = statement.where(col(ServiceViolation.service) == f.service.value)
    return _page(session, statement.order_by(col(ServiceViolation.id).desc()), page)


# ---- exemptions -------------------------------------------------------------------------------------


def active_exemptions(
    session: Session, vm_ids: Iterable[int], now: datetime
) -> dict[int, list[ServiceExemption]]:
    """The exemptions in force at ``now`` (not revoked, not expired), per VM."""
    out: dict[int, list[ServiceExemption]] = defaultdict(list)
    ids = list(vm_ids)
    if not ids:
        return out
    for e in session.exec(
        select(ServiceExemption).where(
            col(ServiceExemption.vm_id).in_(ids),
            col(ServiceExemption.revoked_at).is_(None),
            or_(col(ServiceExemption.expires_at).is_(None), col(ServiceExemption.expires_at) > now),
        )
    ):
        out[e.vm_id].append(e)
    return out


def exemption(session: Session, exemption_id: int) -> ServiceExemption:
    found = session.get(ServiceExemption, exemption_id)
    if found is None:
        raise errors.NotFound("exemption", exemption_id)
    return found


def exemptions(session: Session, actor: Actor, *, vm_id: int | None = None) -> list[ServiceExemption]:
    """Every exemption ``actor`` sees (of one VM, or all), newest first."""
    statement = visible(select(ServiceExemption), actor, col(ServiceExemption.unit_id))
    if vm_id is not None:
        statement = statement.where(col(ServiceExemption.vm_id) == vm_id)
    return list(session.exec(statement.order_by(col(ServiceExemption.id).desc())))
