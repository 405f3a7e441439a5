"""The center's reports by unit and period (issue 14, point 3): provisioning on time, incidents per
month, time in quarantine, repeat offenders, overdue findings and the compliance summary per unit.

Each use case takes the session, the actor and a validated :class:`Period` and returns plain rows
(dicts keyed like the report's columns); the routes (:mod:`vmportal.reports.period_api`) turn them into
JSON, CSV or XLSX. A period is a pair of Beijing calendar dates, both included; every moment is
bucketed and shown in Beijing time (:mod:`vmportal.kit.clock`), the zone every date a unit sees is in.
Who sees what is the one scoping rule: a unit's users their own unit, the center's roles every unit.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlmodel import Session

from policies.compromise import CATEGORY_NAMES_ZH, SEVERITY_NAMES_ZH, Category, Severity
from policies.deadline import PROVISIONING_DAYS
from policies.quota import DIMENSION_NAMES, DIMENSIONS, Resources
from policies.roles import Actor
from vmportal.cleanup import service as cleanup
from vmportal.kit import db, errors
from vmportal.kit.clock import BEIJING, beijing_today
from vmportal.reports import repository
from vmportal.request.service import report as request_report
from vmportal.unit import service as units
from vmportal.unit.models import Unit

#: The longest period a report covers (three years and a day for the leap year).
MAX_PERIOD_DAYS = 3 * 365 + 1
#: The dates a period may name: nothing of the portal's is older, and a date far off is a typing slip
#: (and would overflow the conversion to UTC at the ends of the calendar).
FIRST_DATE, LAST_DATE = date(2000, 1, 1), date(2099, 12, 31)
#: How far back a period reaches when ``since`` is not given: this month and the eleven before it.
DEFAULT_MONTHS = 12
#: The incident origins (``Incident.origin``), in the order the reports show them.
ORIGINS: dict[str, str] = {"alert": "告警", "notice": "通报", "scan": "扫描", "manual": "人工登记"}
#: The kinds of alert source (``vmportal.alerts.SourceKind``), for the incidents an alert opened.
SENSORS: dict[str, str] = {
    "suricata": "Suricata",
    "wazuh": "Wazuh",
    "zeek": "Zeek",
    "elastic": "Elastic",
    "alertmanager": "Alertmanager",
    "generic": "其他告警系统",
}
#: The incident categories in the order the reports show them.
CATEGORIES: tuple[Category, ...] = tuple(Category)
#: The unit label of incidents owned by no unit (an unregistered VM), seen by the center only.
NO_UNIT_ZH = "（未归属单位）"


# ---- the period ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Period:
    """Beijing calendar dates ``since`` … ``until``, both included."""

    since: date
    until: date

    @property
    def start(self) -> datetime:
        """The first moment of ``since`` in Beijing, in UTC."""
        return datetime.combine(self.since, time.min, BEIJING).astimezone(UTC)

    @property
    def end(self) -> datetime:
        """The first moment after ``until`` in Beijing, in UTC (exclusive)."""
        return datetime.combine(self.until + timedelta(days=1), time.min, BEIJING).astimezone(UTC)

    def months(self) -> list[str]:
        """Every month ("YYYY-MM") the period touches, in order."""
        out, year, month = [], self.since.year, self.since.month
        while (year, month) <= (self.until.year, self.until.month):
            out.append(f"{year:04d}-{month:02d}")
            year, month = (year + 1, 1) if month == 12 else (year, month + 1)
        return out

    def out(self) -> dict[str, str]:
        return {"since": self.since.isoformat(), "until": self.until.isoformat(), "zone": "Asia/Shanghai"}


def _months_back(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 - months
    return date(index // 12, index % 12 + 1, 1)


def period(since: date | None, until: date | None, *, today: date | None = None) -> Period:
    """The period asked for, checked: ``until`` defaults to today (Beijing), ``since`` to the first day
    of the month eleven months before ``until``. Refused (422 naming the field and the rule): a date
    before 2000 or after 2099, ``since`` after ``until``, ``since`` in the future, a period longer
    than three years."""
    today = today or beijing_today()
    for name, day in (("since", since), ("until", until)):
        if day is not None and not FIRST_DATE <= day <= LAST_DATE:
            raise errors.InvalidField(
                name,
                "date_out_of_range",
                f"must be between {FIRST_DATE.isoformat()} and {LAST_DATE.isoformat()}",
                message_zh=f"应在 {FIRST_DATE.isoformat()} 至 {LAST_DATE.isoformat()} 之间",
            )
    until = until or today
    since = since or _months_back(until, DEFAULT_MONTHS - 1)
    if since > until:
        raise errors.InvalidField(
            "since",
            "period_order",
            f"must not be after until ({until.isoformat()})",
            message_zh=f"不能晚于截止日期（{until.isoformat()}）",
        )
    if since > today:
        raise errors.InvalidField(
            "since",
            "period_in_future",
            f"must not be in the future (today in Beijing is {today.isoformat()})",
            message_zh=f"不能晚于今天（北京时间 {today.isoformat()}）",
        )
    if (until - since).days + 1 > MAX_PERIOD_DAYS:
        raise errors.InvalidField(
            "until",
            "period_too_long",
            f"a period covers at most {MAX_PERIOD_DAYS} days (three years); "
            f"this one covers {(until - since).days + 1}",
            message_zh=f"统计期间最长 {MAX_PERIOD_DAYS} 天（三年），当前为 {(until - since).days + 1} 天",
        )
    return Period(since, until)


# ---- shared helpers -----------------------------------------------------------------------------------


def beijing_text(moment: datetime | None) -> str | None:
    """A moment as its Beijing wall-clock time, "YYYY-MM-DD HH:MM" (what the unit's staff read)."""
    return None if moment is None else moment.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M")


def _month(moment: datetime) -> str:
    return moment.astimezone(BEIJING).strftime("%Y-%m")


def _days(delta: timedelta) -> float:
    return round(delta.total_seconds() / 86400, 1)


def _hours(seconds: float) -> float:
    return round(seconds / 3600, 1)


def _median(values: Sequence[float]) -> float | None:
    return round(statistics.median(values), 1) if values else None


def _share(part: int, whole: int) -> float | None:
    """``part`` of ``whole`` in percent, one decimal; None when there is nothing to share."""
    return round(100 * part / whole, 1) if whole else None


def visible_units(session: Session, actor: Actor, unit_id: int | None) -> list[Unit]:
    """The active units ``actor`` may see (a unit's users: their own), or only ``unit_id``; another
    unit's id is a 404 for a unit's users (as if it did not exist)."""
    if unit_id is not None:
        unit = units.visible_unit(session, actor, unit_id)
        return [unit]
    return units.list_units(session, actor, active=True)


def _known_units(session: Session, actor: Actor, shown: list[Unit]) -> dict[int, Unit]:
    """Every unit ``actor`` may see, deactivated ones too, by id: a unit closed since still owns its
    history, so its deliveries and incidents of the period keep their unit's name."""
    return _unit_lookup([*units.list_units(session, actor), *shown])


def _with_history(
    shown: list[Unit], known: dict[int, Unit], unit_id: int | None, ids: Iterable[Any]
) -> list[Unit]:
    """The units a per-unit table lists: those shown, and (when not asked for one unit) each
    deactivated unit that has figures in the period, after them by code."""
    if unit_id is not None:
        return shown
    listed = {u.id for u in shown}
    extra = {i for i in ids if i is not None and i not in listed and i in known}
    return [*shown, *sorted((known[i] for i in extra), key=lambda u: u.code)]


def _unit_columns(unit: Unit) -> dict[str, Any]:
    return {"unit_id": unit.id, "unit_code": unit.code, "unit_name": unit.name_zh}


def _unit_lookup(units_: Iterable[Unit]) -> dict[int, Unit]:
    return {u.id: u for u in units_ if u.id is not None}


def _unit_of(by_id: dict[int, Unit], unit_id: int | None) -> dict[str, Any]:
    unit = by_id.get(unit_id) if unit_id is not None else None
    if unit is None:
        return {"unit_id": unit_id, "unit_code": "", "unit_name": NO_UNIT_ZH if unit_id is None else ""}
    return _unit_columns(unit)


@dataclass
class Report:
    """What a report use case returns: the period, the main rows, named detail lists, totals."""

    period: Period
    generated_at: datetime
    rows: list[dict[str, Any]] = field(default_factory=list)
    details: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    totals: dict[str, Any] = field(default_factory=dict)


# ---- provisioning on time -----------------------------------------------------------------------------


def _clock_start(due_at: datetime) -> datetime:
    # policies.deadline: due = the later of submission and the agreement's filing + 7 days.
    return due_at - timedelta(days=PROVISIONING_DAYS)


def provisioning(session: Session, actor: Actor, p: Period, unit_id: int | None = None) -> Report:
    """Per unit: the requests delivered in the period, how many within the agreed week (agreement §3:
    by the request's due time), the share on time, median and longest time to delivery (days, from
    when the week started), the median from the center's approval to delivery, and the requests open
    past their due time now; the late deliveries and
    the overdue requests listed."""
    now = db.utcnow()
    shown = visible_units(session, actor, unit_id)
    by_id = _known_units(session, actor, shown)
    delivered = list(repository.delivered_requests(session, actor, p.start, p.end, unit_id))
    overdue = list(repository.overdue_requests(session, actor, now, unit_id))
    shown = _with_history(shown, by_id, unit_id, (r.unit_id for r in (*delivered, *overdue)))
    report = Report(p, now)
    late_rows: list[dict[str, Any]] = []
    overdue_rows: list[dict[str, Any]] = []
    per_unit: dict[int, list[Any]] = defaultdict(list)
    for r in delivered:
        per_unit[r.unit_id].append(r)
        assert r.delivered_at is not None
        if r.delivered_at > r.due_at:
            late_rows.append(_request_row(by_id, r, days_late=_days(r.delivered_at - r.due_at)))
    overdue_by_unit: Counter[int] = Counter()
    for r in overdue:
        overdue_by_unit[r.unit_id] += 1
        overdue_rows.append(_request_row(by_id, r, days_late=_days(now - r.due_at)))
    all_durations: list[float] = []
    all_after_approval: list[float] = []
    for unit in shown:
        assert unit.id is not None
        rows = per_unit.get(unit.id, [])
        on_time = sum(1 for r in rows if r.delivered_at <= r.due_at)
        durations = [_days(r.delivered_at - _clock_start(r.due_at)) for r in rows]
        after_approval = [_days(r.delivered_at - r.decided_at) for r in rows if r.decided_at is not None]
        all_durations += durations
        all_after_approval += after_approval
        report.rows.append(
            {
                **_unit_columns(unit),
                "delivered": len(rows),
                "on_time": on_time,
                "late": len(rows) - on_time,
                "on_time_percent": _share(on_time, len(rows)),
                "median_days": _median(durations),
                "longest_days": max(durations, default=None),
                "median_days_after_approval": _median(after_approval),
                "overdue_now": overdue_by_unit.get(unit.id, 0),
            }
        )
    total_on_time = sum(r["on_time"] for r in report.rows)
    total = sum(r["delivered"] for r in report.rows)
    report.totals = {
        "delivered": total,
        "on_time": total_on_time,
        "late": total - total_on_time,
        "on_time_percent": _share(total_on_time, total),
        "median_days": _median(all_durations),
        "longest_days": max(all_durations, default=None),
        "median_days_after_approval": _median(all_after_approval),
        "overdue_now": len(overdue_rows),
    }
    report.details = {"late": late_rows, "overdue_now": overdue_rows}
    return report


def _request_row(by_id: dict[int, Unit], r: Any, *, days_late: float) -> dict[str, Any]:
    return {
        "request_id": r.id,
        **_unit_of(by_id, r.unit_id),
        "hostname": r.hostname,
        "system_name": r.system_name,
        "state": r.state,
        "state_zh": errors.state_name_zh(r.state),
        "submitted_at": beijing_text(r.submitted_at),
        "approved_at": beijing_text(r.decided_at),
        "due_at": beijing_text(r.due_at),
        "delivered_at": beijing_text(r.delivered_at),
        "days_late": days_late,
    }


# ---- incidents per month ------------------------------------------------------------------------------


def _incident_counts(incidents: Sequence[Any], sensors: dict[int, str]) -> dict[str, int]:
    counts: dict[str, int] = {"total": len(incidents)}
    by_category = Counter(i.category for i in incidents)
    by_origin = Counter(i.origin for i in incidents)
    by_sensor = Counter(sensors[i.id] for i in incidents if i.id in sensors)
    for c in CATEGORIES:
        counts[f"category_{c.value}"] = by_category.get(c.value, 0)
    # A category the policy does not name (none today) still counts, under "other".
    counts["category_other"] += sum(
        n for k, n in by_category.items() if k not in {c.value for c in CATEGORIES}
    )
    for o in ORIGINS:
        counts[f"origin_{o}"] = by_origin.get(o, 0)
    counts["origin_manual"] += sum(n for k, n in by_origin.items() if k not in ORIGINS)
    for kind in SENSORS:
        counts[f"sensor_{kind}"] = by_sensor.get(kind, 0)
    counts["sensor_generic"] += sum(n for k, n in by_sensor.items() if k not in SENSORS)
    return counts


def incidents_monthly(session: Session, actor: Actor, p: Period, unit_id: int | None = None) -> Report:
    """Incidents opened in the period, per month (Beijing) and per unit, by category and by origin
    (alert, notice, scan, manual) and, for those an alert opened, by the kind of source that sent the
    first alert (Suricata, Wazuh…). ``rows``: one per month of the period, zeros included;
    ``details["by_unit"]``: one per (month, unit) that had any."""
    shown = visible_units(session, actor, unit_id)
    by_id = _known_units(session, actor, shown)
    incidents = repository.incidents_created(session, actor, p.start, p.end, unit_id)
    sensors = repository.first_alert_source_kinds(session, (i.id for i in incidents))
    by_month: dict[str, list[Any]] = defaultdict(list)
    by_month_unit: dict[tuple[str, int | None], list[Any]] = defaultdict(list)
    for i in incidents:
        month = _month(i.created_at)
        by_month[month].append(i)
        by_month_unit[(month, i.unit_id)].append(i)
    report = Report(p, db.utcnow())
    report.rows = [{"month": m, **_incident_counts(by_month.get(m, []), sensors)} for m in p.months()]
    order = {u: n for n, u in enumerate(by_id)}
    report.details["by_unit"] = [
        {"month": month, **_unit_of(by_id, uid), **_incident_counts(rows, sensors)}
        for (month, uid), rows in sorted(
            by_month_unit.items(), key=lambda kv: (kv[0][0], order.get(kv[0][1] or -1, len(order)))
        )
    ]
    report.totals = _incident_counts(incidents, sensors)
    return report


# ---- time in quarantine -------------------------------------------------------------------------------


def quarantine(session: Session, actor: Actor, p: Period, unit_id: int | None = None) -> Report:
    """Per unit, the incidents whose containment was confirmed in the period: how many were released
    and the median and longest time from containment to release (hours, ``Incident.quarantine_seconds``
    as the release measured it), how many are still contained and the longest of those so far."""
    now = db.utcnow()
    shown = visible_units(session, actor, unit_id)
    by_id = _known_units(session, actor, shown)
    incidents = repository.incidents_contained(session, actor, p.start, p.end, unit_id)
    shown = _with_history(shown, by_id, unit_id, (i.unit_id for i in incidents))
    names = repository.vm_names(session, (i.vm_id for i in incidents))
    per_unit: dict[int | None, list[tuple[bool, float]]] = defaultdict(list)
    listed: list[dict[str, Any]] = []
    for i in incidents:
        released = i.quarantine_seconds is not None
        assert i.contained_at is not None
        seconds = i.quarantine_seconds if released else (now - i.contained_at).total_seconds()
        assert seconds is not None
        per_unit[i.unit_id].append((released, _hours(seconds)))
        listed.append(
            {
                "incident_id": i.id,
                **_unit_of(by_id, i.unit_id),
                "vm_name": names.get(i.vm_id, "") if i.vm_id is not None else "",
                "category": _category_zh(i.category),
                "state": i.state,
                "state_zh": errors.state_name_zh(i.state),
                "contained_at": beijing_text(i.contained_at),
                "restored_at": beijing_text(i.restored_at),
                "released": released,
                "hours": _hours(seconds),
            }
        )
    report = Report(p, now)

    def figures(pairs: list[tuple[bool, float]]) -> dict[str, Any]:
        done = [h for released, h in pairs if released]
        ongoing = [h for released, h in pairs if not released]
        return {
            "contained": len(pairs),
            "released": len(done),
            "median_hours": _median(done),
            "longest_hours": max(done, default=None),
            "still_contained": len(ongoing),
            "longest_ongoing_hours": max(ongoing, default=None),
        }

    for unit in shown:
        report.rows.append({**_unit_columns(unit), **figures(per_unit.get(unit.id, []))})
    report.details["incidents"] = listed
    report.totals = figures([pair for pairs in per_unit.values() for pair in pairs])
    return report


# ---- repeat offenders ---------------------------------------------------------------------------------


def repeat_offenders(
    session: Session, actor: Actor, p: Period, threshold: int, unit_id: int | None = None
) -> Report:
    """The units (``rows``) and the VMs (``details["vms"]``) with more than ``threshold`` incidents
    opened in the period, the most incidents first, with the categories they had."""
    shown = visible_units(session, actor, unit_id)
    by_id = _known_units(session, actor, shown)
    incidents = repository.incidents_created(session, actor, p.start, p.end, unit_id)
    per_unit: dict[int, list[Any]] = defaultdict(list)
    per_vm: dict[int, list[Any]] = defaultdict(list)
    for i in incidents:
        if i.unit_id is not None:
            per_unit[i.unit_id].append(i)
        if i.vm_id is not None:
            per_vm[i.vm_id].append(i)
    names = repository.vm_names(session, per_vm)

    def about(rows: list[Any]) -> dict[str, Any]:
        categories = Counter(i.category for i in rows)
        return {
            "incidents": len(rows),
            "categories": [
                f"{_category_zh(c)}×{n}"
                for c, n in sorted(categories.items(), key=lambda kv: (-kv[1], kv[0]))
            ],
            "first_at": beijing_text(min(i.created_at for i in rows)),
            "last_at": beijing_text(max(i.created_at for i in rows)),
        }

    report = Report(p, db.utcnow(), totals={"threshold": threshold})
    report.rows = sorted(
        (
            {
                **_unit_of(by_id, uid),
                "vms": len({i.vm_id for i in rows if i.vm_id is not None}),
                **about(rows),
            }
            for uid, rows in per_unit.items()
            if len(rows) > threshold and uid in by_id
        ),
        key=lambda r: (-r["incidents"], r["unit_code"]),
    )
    report.details["vms"] = sorted(
        (
            {
                "vm_id": vm_id,
                "vm_name": names.get(vm_id, ""),
                **_unit_of(by_id, rows[0].unit_id),
                **about(rows),
            }
            for vm_id, rows in per_vm.items()
            if len(rows) > threshold
        ),
        key=lambda r: (-r["incidents"], r["vm_name"]),
    )
    report.totals.update(units=len(report.rows), vms=len(report.details["vms"]))
    return report


def _category_zh(value: str) -> str:
    try:
        return CATEGORY_NAMES_ZH[Category(value)]
    except (ValueError, KeyError):
        return value


# ---- overdue findings ---------------------------------------------------------------------------------


def overdue_findings(session: Session, actor: Actor, p: Period, unit_id: int | None = None) -> Report:
    """The findings (安全隐患) past their deadline now, their deadline in the period (compliance's rule:
    open or notified; once the unit reports the fix the wait is the center's), listed
    (``details["findings"]``) and counted per unit (``rows``), with the findings of the period the unit
    fixed only after the deadline."""
    now = db.utcnow()
    shown = visible_units(session, actor, unit_id)
    by_id = _known_units(session, actor, shown)
    overdue = repository.overdue_findings(session, actor, now, p.start, p.end, unit_id)
    late = repository.findings_fixed_late(session, actor, p.start, p.end, unit_id)
    shown = _with_history(shown, by_id, unit_id, (f.unit_id for f in (*overdue, *late)))
    names = repository.vm_names(session, (f.vm_id for f in overdue))
    per_unit: dict[int | None, list[Any]] = defaultdict(list)
    listed = []
    for f in overdue:
        assert f.deadline_at is not None
        per_unit[f.unit_id].append(f)
        listed.append(
            {
                "finding_id": f.id,
                **_unit_of(by_id, f.unit_id),
                "vm_name": names.get(f.vm_id, "") if f.vm_id is not None else "",
                "title": f.title,
                "category": _category_zh(f.category),
                "severity": _severity_zh(f.severity),
                "state": f.state,
                "state_zh": errors.state_name_zh(f.state),
                "deadline_at": beijing_text(f.deadline_at),
                "days_overdue": _days(now - f.deadline_at),
            }
        )
    late_by_unit = Counter(f.unit_id for f in late)
    report = Report(p, now)
    for unit in shown:
        rows = per_unit.get(unit.id, [])
        report.rows.append(
            {
                **_unit_columns(unit),
                "overdue": len(rows),
                **{f"severity_{s.value}": sum(1 for f in rows if f.severity == s.value) for s in Severity},
                "oldest_deadline": beijing_text(min((f.deadline_at for f in rows), default=None)),
                "longest_overdue_days": max((_days(now - f.deadline_at) for f in rows), default=None),
                "fixed_late": late_by_unit.get(unit.id, 0),
            }
        )
    report.details["findings"] = listed
    report.totals = {"overdue": len(listed), "fixed_late": len(late)}
    return report


def _severity_zh(value: str) -> str:
    try:
        return SEVERITY_NAMES_ZH[Severity(value)]
    except (ValueError, KeyError):
        return value


# ---- compliance summary per unit ----------------------------------------------------------------------


def compliance_summary(session: Session, actor: Actor, p: Period, unit_id: int | None = None) -> Report:
    """Per unit, in one row: the paperwork (registry complete, commitment letter and VM agreement
    signed, information systems registered; ``policies.paperwork`` decides), the period's incidents and
    late deliveries, and what is outstanding now (open incidents, VMs in quarantine, overdue findings,
    open forbidden services), and the last clean-up (plan 二(二)1: the latest campaign whose deadline
    has passed; ``last_cleanup_confirmed`` None when the unit had nothing in it or none was judged yet).
    ``compliant``: paperwork complete, nothing overdue or open of the unit's to do (an open incident
    waiting for the center does not count against it), and the last clean-up not left unconfirmed."""
    now = db.utcnow()
    shown = visible_units(session, actor, unit_id)
    incidents = Counter(
        i.unit_id for i in repository.incidents_created(session, actor, p.start, p.end, unit_id)
    )
    late = Counter(
        r.unit_id
        for r in repository.delivered_requests(session, actor, p.start, p.end, unit_id)
        if r.delivered_at is not None and r.delivered_at > r.due_at
    )
    open_incidents = repository.open_incidents_by_unit(session, actor)
    quarantined = repository.quarantined_by_unit(session, actor)
    overdue = repository.overdue_findings_by_unit(session, actor, now)
    violations = repository.open_violations_by_unit(session, actor)
    cleanups = cleanup.standings(session)
    report = Report(p, now)
    for unit in shown:
        assert unit.id is not None
        status = units.paperwork_status(session, unit.id)
        missing = status.missing
        row = {
            **_unit_columns(unit),
            "registry_complete": not any(m.startswith("security_") for m in missing),
            "commitment_letter_signed": "commitment_letter" not in missing,
            "vm_agreement_signed": "vm_agreement" not in missing,
            "systems_registered": len(units.list_systems(session, unit.id)),
            "paperwork_complete": status.complete,
            "missing": missing,
            "incidents": incidents.get(unit.id, 0),
            "late_deliveries": late.get(unit.id, 0),
            "open_incidents": open_incidents.get(unit.id, 0),
            "quarantined": quarantined.get(unit.id, 0),
            "overdue_findings": overdue.get(unit.id, 0),
            "open_violations": violations.get(unit.id, 0),
            **_cleanup_columns(cleanups.get(unit.id)),
        }
        row["compliant"] = bool(
            row["paperwork_complete"]
            and not row["overdue_findings"]
            and not row["open_violations"]
            and row["last_cleanup_confirmed"] is not False
        )
        report.rows.append(row)
    report.totals = {
        "units": len(report.rows),
        "compliant": sum(1 for r in report.rows if r["compliant"]),
        "paperwork_complete": sum(1 for r in report.rows if r["paperwork_complete"]),
    }
    return report


def _cleanup_columns(standing: cleanup.Standing | None) -> dict[str, Any]:
    if standing is None:
        return {
            "last_cleanup": None,
            "last_cleanup_confirmed": None,
            "last_cleanup_on_time": None,
            "cleanup_unconfirmed": 0,
        }
    return {
        "last_cleanup": standing.campaign_name,
        "last_cleanup_confirmed": standing.confirmed,
        "last_cleanup_on_time": standing.confirmed_on_time,
        "cleanup_unconfirmed": standing.pending,
    }


# ---- quota use ----------------------------------------------------------------------------------------


def quota_use(session: Session, actor: Actor, p: Period, unit_id: int | None = None) -> Report:
    """Per unit, now (quota is a standing figure, not one of the period: ``p`` only labels the
    report): quota, used, requested (pending requests) and free for VMs, vCPUs, memory and disk, the
    share of the vCPU and memory quota in use, and the dimensions over quota (used and requested
    together beyond it); the same figures as ``GET /reports/quota``."""
    shown = visible_units(session, actor, unit_id)
    wanted = {u.id for u in shown}
    usage = {
        r.unit.id: r.usage
        for r in request_report.quota_report(session, unit_id=unit_id)
        if r.unit.id in wanted
    }
    report = Report(p, db.utcnow())
    total_quota, total_used, total_requested = Resources(), Resources(), Resources()
    for unit in shown:
        row = usage.get(unit.id)
        if row is None:  # a unit without a quota line yet: nothing granted, nothing used
            continue
        total_quota, total_used = total_quota + row.quota, total_used + row.used
        total_requested = total_requested + row.requested
        figures: dict[str, Any] = {**_unit_columns(unit)}
        for d in DIMENSIONS:
            for part, value in (
                ("quota", row.quota),
                ("used", row.used),
                ("requested", row.requested),
                ("free", row.free),
            ):
                figures[f"{d}_{part}"] = int(getattr(value, d))
        figures["vcpus_used_percent"] = _share(row.used.vcpus, row.quota.vcpus)
        figures["memory_used_percent"] = _share(row.used.memory_gib, row.quota.memory_gib)
        figures["over_quota"] = [DIMENSION_NAMES[d][0] for d in row.over]
        report.rows.append(figures)
    report.totals = {
        "units": len(report.rows),
        "over_quota_units": sum(1 for r in report.rows if r["over_quota"]),
        **{
            f"{d}_{part}": int(getattr(t, d))
            for d in DIMENSIONS
            for part, t in (("quota", total_quota), ("used", total_used), ("requested", total_requested))
        },
        "vcpus_used_percent": _share(total_used.vcpus, total_quota.vcpus),
        "memory_used_percent": _share(total_used.memory_gib, total_quota.memory_gib),
    }
    return report


# ---- the committee's workbook -------------------------------------------------------------------------


@dataclass
class CommitteeReports:
    """Every report of the period at once, and the key figures of its cover sheet."""

    period: Period
    generated_at: datetime
    reports: dict[str, Report]
    cover: list[dict[str, Any]]


def committee(
    session: Session, actor: Actor, p: Period, threshold: int = 1, unit_id: int | None = None
) -> CommitteeReports:
    """The seven reports of the period for the 网络安全工作委员会, in the order they are read (quota
    use last: it is a figure of now), and the cover's figures (each the same number as its report's
    totals)."""
    reports = {
        "compliance": compliance_summary(session, actor, p, unit_id),
        "provisioning": provisioning(session, actor, p, unit_id),
        "incidents_monthly": incidents_monthly(session, actor, p, unit_id),
        "quarantine": quarantine(session, actor, p, unit_id),
        "repeat_offenders": repeat_offenders(session, actor, p, threshold, unit_id),
        "overdue_findings": overdue_findings(session, actor, p, unit_id),
        "quota": quota_use(session, actor, p, unit_id),
    }
    c, pr, inc, q, ro, of, qu = (reports[k].totals for k in reports)
    figures: list[tuple[str, str, Any]] = [
        ("统计期间（北京时间）", "period", f"{p.since.isoformat()} 至 {p.until.isoformat()}"),
        ("单位数", "units", c["units"]),
        ("达标单位数", "compliant_units", c["compliant"]),
        ("材料齐全单位数", "paperwork_complete_units", c["paperwork_complete"]),
        ("期间交付虚拟机数", "delivered", pr["delivered"]),
        ("按期交付率(%)", "on_time_percent", pr["on_time_percent"]),
        ("交付用时中位数(天)", "median_days_to_delivery", pr["median_days"]),
        ("当前超期未交付申请数", "overdue_requests_now", pr["overdue_now"]),
        ("期间安全事件数", "incidents", inc["total"]),
        ("期间处置虚拟机次数", "contained", q["contained"]),
        ("处置时长中位数(小时)", "median_hours_contained", q["median_hours"]),
        ("最长处置时长(小时)", "longest_hours_contained", q["longest_hours"]),
        ("仍在处置中", "still_contained", q["still_contained"]),
        (f"安全事件超过 {threshold} 起的单位数", "repeat_offender_units", ro["units"]),
        (f"安全事件超过 {threshold} 起的虚拟机数", "repeat_offender_vms", ro["vms"]),
        ("超期未整改隐患数", "overdue_findings", of["overdue"]),
        ("超期后才整改的隐患数", "findings_fixed_late", of["fixed_late"]),
        ("超出配额单位数（当前）", "over_quota_units", qu["over_quota_units"]),
        ("vCPU 配额使用率(%)（当前）", "vcpus_used_percent", qu["vcpus_used_percent"]),
        ("内存配额使用率(%)（当前）", "memory_used_percent", qu["memory_used_percent"]),
    ]
    cover = [{"figure": zh, "key": key, "value": value} for zh, key, value in figures]
    return CommitteeReports(p, db.utcnow(), reports, cover)
