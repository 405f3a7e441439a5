"""The quota report's use case: it lives here because the pending requests are request's to count;
quota knows only quota and use (architecture.md: a use case across domains lives in the upper one)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import Session

from policies.quota import Resources
from vmportal.quota import service as quota_service
from vmportal.request import repository
from vmportal.request.lifecycle import PENDING_STATES
from vmportal.unit import repository as unit_repository
from vmportal.unit.models import Unit


@dataclass(frozen=True)
class UnitReport:
    unit: Unit
    usage: quota_service.UnitUsage


def quota_report(session: Session, *, unit_id: int | None = None) -> list[UnitReport]:
    """Every unit (or one) with quota, used, requested (pending requests) and free."""
    units = [u for u in unit_repository.list_units(session) if unit_id is None or u.id == unit_id]
    ids = [u.id for u in units if u.id is not None]
    pending = {k: Resources(*t) for k, t in repository.totals_by_unit(session, ids, PENDING_STATES).items()}
    by_id = {row.unit_id: row for row in quota_service.usage(session, ids, pending)}
    return [UnitReport(unit=u, usage=by_id[u.id]) for u in units if u.id is not None]
