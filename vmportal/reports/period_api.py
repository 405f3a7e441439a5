"""The center's reports by unit and period (issue 14, point 3), each as JSON, CSV (UTF-8 with BOM)
or XLSX (Chinese headers, a native chart, the report's lists on further sheets):

    GET /reports/provisioning       delivered within the agreed week: count, share on time, the late ones
    GET /reports/incidents-monthly  incidents per month, by unit, by category and by origin
    GET /reports/quarantine         time from containment to release per incident; median, longest
    GET /reports/repeat-offenders   units and VMs with more than ``threshold`` incidents
    GET /reports/overdue-findings   安全隐患 past their deadline
    GET /reports/compliance         the compliance summary per unit
    GET /reports/committee          all of them in one workbook, with a cover of the key figures and
                                    the quota use now; format=pdf: the one-page summary with charts

``since`` / ``until``: Beijing dates, both included (default: this month and the eleven before it);
``unit_id``: one unit (a unit's users: their own only, another unit's id answers 404). A unit's users
see their own unit, the center's roles and the auditor every unit. The JSON answer carries the main
table (``columns`` and ``rows``), the lists by name, ``totals`` and the ``period``; a CSV holds the
main table, the XLSX every table.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response

from policies.compromise import CATEGORY_NAMES_ZH, SEVERITY_NAMES_ZH, Severity
from policies.quota import DIMENSIONS
from vmportal.identity.deps import CurrentActor
from vmportal.kit.http import SessionDep
from vmportal.reports import service, summary, tables
from vmportal.reports.quota_api import DIMENSION_ZH, PART_ZH
from vmportal.reports.service import CATEGORIES, ORIGINS, SENSORS, Period, Report
from vmportal.reports.tables import Chart, Column, Format, Table

router = APIRouter(tags=["reports"])

_FILES: dict[int | str, dict[str, Any]] = {200: {"content": {"text/csv": {}, tables.XLSX_TYPE: {}}}}


def _period(
    since: Annotated[date | None, Query(description="First day (Beijing date, YYYY-MM-DD), included")] = None,
    until: Annotated[date | None, Query(description="Last day (Beijing date, YYYY-MM-DD), included")] = None,
) -> Period:
    return service.period(since, until)


PeriodDep = Annotated[Period, Depends(_period)]
UnitParam = Annotated[int | None, Query(ge=1, le=2**31 - 1, description="One unit only")]
FormatParam = Annotated[Format, Query(description="json, csv or xlsx")]

_UNIT = (
    Column("unit_code", "单位代码", "Unit code"),
    Column("unit_name", "单位名称", "Unit"),
)


@dataclass(frozen=True)
class Answer:
    """What every period report takes after its own parameters: one unit or all, and the encoding.

    One dependency, so the routes state the shared query parameters (``unit_id``, ``format``) once,
    and :meth:`serve` turns a report into the JSON answer or the file, named by report and period.
    A route names it before ``period``: FastAPI lists a route's own query parameters first, then each
    dependency's in turn, so the OpenAPI keeps the order it always had (``threshold``, ``unit_id``,
    ``format``, ``since``, ``until``)."""

    unit_id: int | None
    format: Format

    def serve(self, report: Report, build: Builder, stem: str) -> Any:
        main, lists = build(report)
        if self.format == Format.JSON:
            body = tables.to_json(main)
            body.update(
                period=report.period.out(),
                generated_at=report.generated_at.isoformat(),
                totals=report.totals,
                lists={key: tables.to_json(t) for key, t in lists.items()},
            )
            return body
        return tables.download(main, self.format, file_stem(stem, report.period), more=list(lists.values()))


def _answer(unit_id: UnitParam = None, format: FormatParam = Format.JSON) -> Answer:
    return Answer(unit_id, format)


AnswerDep = Annotated[Answer, Depends(_answer)]
#: A report's tables: the main one (with its chart) and its lists by name.
Builder = Callable[[Report], tuple[Table, dict[str, Table]]]


def file_stem(stem: str, p: Period) -> str:
    """A download's name without extension: the report and its period, ``provisioning-20260101-20261231``."""
    return f"{stem}-{p.since:%Y%m%d}-{p.until:%Y%m%d}"


def _get(path: str, summary: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The route decorator of every report here: a JSON answer, or a CSV or XLSX file."""
    return router.get(path, summary=summary, responses=_FILES)


# ---- provisioning on time -----------------------------------------------------------------------------

_PROVISIONING = (
    *_UNIT,
    Column("delivered", "期间交付数", "Delivered in the period"),
    Column("on_time", "按期交付数", "Delivered within the week"),
    Column("late", "逾期交付数", "Delivered late"),
    Column("on_time_percent", "按期率(%)", "On time (%)"),
    Column("median_days", "交付用时中位数(天)", "Median days to delivery"),
    Column("longest_days", "最长交付用时(天)", "Longest days to delivery"),
    Column("median_days_after_approval", "审批至交付中位数(天)", "Median days from approval to delivery"),
    Column("overdue_now", "当前超期未交付", "Open past due now"),
)
_REQUEST = (
    Column("request_id", "申请编号", "Request"),
    *_UNIT,
    Column("hostname", "主机名", "Hostname"),
    Column("system_name", "信息系统名称", "Information system"),
    Column("state_zh", "状态", "State"),
    Column("submitted_at", "提交时间", "Submitted (Beijing)"),
    Column("approved_at", "审批时间", "Decided (Beijing)"),
    Column("due_at", "应交付时间", "Due (Beijing)"),
    Column("delivered_at", "交付时间", "Delivered (Beijing)"),
    Column("days_late", "超期天数", "Days late"),
)


@_get(
    "/reports/provisioning",
    "Per unit: requests delivered in the period, how many within the agreed week, the late ones",
)
def provisioning_report(
    session: SessionDep,
    actor: CurrentActor,
    out: AnswerDep,
    period: PeriodDep,
) -> Any:
    report = service.provisioning(session, actor, period, out.unit_id)
    return out.serve(report, provisioning_tables, "provisioning")


# ---- incidents per month ------------------------------------------------------------------------------

_COUNTS = (
    Column("total", "事件总数", "Incidents"),
    *(Column(f"category_{c.value}", CATEGORY_NAMES_ZH[c], c.value) for c in CATEGORIES),
    *(Column(f"origin_{o}", f"来源：{zh}", f"from {o}") for o, zh in ORIGINS.items()),
    *(Column(f"sensor_{k}", f"告警系统：{name}", f"alerts from {k}") for k, name in SENSORS.items()),
)


@_get(
    "/reports/incidents-monthly",
    "Incidents opened per month (Beijing), per unit, by category and by origin",
)
def incidents_monthly_report(
    session: SessionDep,
    actor: CurrentActor,
    out: AnswerDep,
    period: PeriodDep,
) -> Any:
    report = service.incidents_monthly(session, actor, period, out.unit_id)
    return out.serve(report, incidents_monthly_tables, "incidents-monthly")


# ---- time in quarantine -------------------------------------------------------------------------------

_QUARANTINE = (
    *_UNIT,
    Column("contained", "期间处置数", "Contained in the period"),
    Column("released", "已解除数", "Released"),
    Column("median_hours", "处置时长中位数(小时)", "Median hours contained"),
    Column("longest_hours", "最长处置时长(小时)", "Longest hours contained"),
    Column("still_contained", "仍在处置中", "Still contained"),
    Column("longest_ongoing_hours", "处置中最长已历时(小时)", "Longest ongoing (hours)"),
)
_QUARANTINED = (
    Column("incident_id", "安全事件编号", "Incident"),
    *_UNIT,
    Column("vm_name", "虚拟机", "VM"),
    Column("category", "类别", "Category"),
    Column("state_zh", "状态", "State"),
    Column("contained_at", "处置时间", "Contained (Beijing)"),
    Column("restored_at", "解除时间", "Released (Beijing)"),
    Column("released", "已解除", "Released"),
    Column("hours", "处置时长(小时)", "Hours contained"),
)


@_get(
    "/reports/quarantine",
    "Per unit: time from containment to release (median, longest), and the still contained",
)
def quarantine_report(
    session: SessionDep,
    actor: CurrentActor,
    out: AnswerDep,
    period: PeriodDep,
) -> Any:
    report = service.quarantine(session, actor, period, out.unit_id)
    return out.serve(report, quarantine_tables, "quarantine")


# ---- repeat offenders ---------------------------------------------------------------------------------

_OFFENCES = (
    Column("incidents", "事件数", "Incidents"),
    Column("categories", "事件类别", "Categories"),
    Column("first_at", "首次发生", "First (Beijing)"),
    Column("last_at", "最近发生", "Last (Beijing)"),
)


@_get(
    "/reports/repeat-offenders",
    "Units and VMs with more than `threshold` incidents opened in the period",
)
def repeat_offenders_report(
    session: SessionDep,
    actor: CurrentActor,
    out: AnswerDep,
    period: PeriodDep,
    threshold: Annotated[int, Query(ge=1, le=1000, description="More than this many incidents")] = 1,
) -> Any:
    report = service.repeat_offenders(session, actor, period, threshold, out.unit_id)
    return out.serve(report, repeat_offenders_tables, "repeat-offenders")


# ---- overdue findings ---------------------------------------------------------------------------------

_OVERDUE = (
    *_UNIT,
    Column("overdue", "超期未整改数", "Overdue now"),
    *(Column(f"severity_{s.value}", SEVERITY_NAMES_ZH[s], s.value) for s in Severity),
    Column("oldest_deadline", "最早整改期限", "Oldest deadline (Beijing)"),
    Column("longest_overdue_days", "最长超期天数", "Longest overdue (days)"),
    Column("fixed_late", "超期后才整改数", "Fixed after the deadline"),
)
_FINDING = (
    Column("finding_id", "隐患编号", "Finding"),
    *_UNIT,
    Column("vm_name", "虚拟机", "VM"),
    Column("title", "隐患名称", "Title"),
    Column("category", "类别", "Category"),
    Column("severity", "严重程度", "Severity"),
    Column("state_zh", "状态", "State"),
    Column("deadline_at", "整改期限", "Deadline (Beijing)"),
    Column("days_overdue", "超期天数", "Days overdue"),
)


@_get(
    "/reports/overdue-findings",
    "Findings (安全隐患) past their deadline now, the deadline in the period; per unit and listed",
)
def overdue_findings_report(
    session: SessionDep,
    actor: CurrentActor,
    out: AnswerDep,
    period: PeriodDep,
) -> Any:
    report = service.overdue_findings(session, actor, period, out.unit_id)
    return out.serve(report, overdue_findings_tables, "overdue-findings")


# ---- compliance summary -------------------------------------------------------------------------------

_COMPLIANCE = (
    *_UNIT,
    Column("compliant", "达标", "Compliant"),
    Column("paperwork_complete", "材料齐全", "Paperwork complete"),
    Column("registry_complete", "通讯录完整", "Registry complete"),
    Column("commitment_letter_signed", "承诺书已签署", "Commitment letter signed"),
    Column("vm_agreement_signed", "协议书已签署", "VM agreement signed"),
    Column("systems_registered", "已登记信息系统数", "Information systems registered"),
    Column("incidents", "期间安全事件数", "Incidents in the period"),
    Column("late_deliveries", "期间逾期交付数", "Late deliveries in the period"),
    Column("open_incidents", "未结安全事件", "Open incidents now"),
    Column("quarantined", "处置中", "Contained now"),
    Column("overdue_findings", "超期未整改隐患", "Overdue findings now"),
    Column("open_violations", "未处理违规服务", "Open forbidden services now"),
    Column("last_cleanup", "最近一次清理工作", "Last clean-up campaign"),
    Column("last_cleanup_confirmed", "最近一次清理已确认", "Last clean-up confirmed"),
    Column("cleanup_unconfirmed", "清理未确认项数", "Clean-up items unconfirmed"),
    Column("missing", "缺少项目", "Missing paperwork"),
)


@_get(
    "/reports/compliance",
    "Per unit: paperwork, the period's incidents, what is outstanding now, compliant or not",
)
def compliance_report(
    session: SessionDep,
    actor: CurrentActor,
    out: AnswerDep,
    period: PeriodDep,
) -> Any:
    report = service.compliance_summary(session, actor, period, out.unit_id)
    return out.serve(report, compliance_tables, "compliance")


def provisioning_tables(report: Report) -> tuple[Table, dict[str, Table]]:
    main = Table(
        "虚拟机开通及时率",
        _PROVISIONING,
        report.rows,
        Chart("各单位按期与逾期交付数", "unit_name", ("on_time", "late"), "台"),
    )
    lists = {
        "late": Table("逾期交付的申请", _REQUEST, report.details["late"]),
        "overdue_now": Table("当前超期未交付的申请", _REQUEST, report.details["overdue_now"]),
    }
    return main, lists


def incidents_monthly_tables(report: Report) -> tuple[Table, dict[str, Table]]:
    month = Column("month", "月份", "Month")
    main = Table(
        "安全事件月度统计", (month, *_COUNTS), report.rows, Chart("每月安全事件数", "month", ("total",), "起")
    )
    lists = {"by_unit": Table("各单位月度安全事件", (month, *_UNIT, *_COUNTS), report.details["by_unit"])}
    return main, lists


def quarantine_tables(report: Report) -> tuple[Table, dict[str, Table]]:
    main = Table(
        "虚拟机处置时长",
        _QUARANTINE,
        report.rows,
        Chart("各单位处置时长（小时）", "unit_name", ("median_hours", "longest_hours"), "小时"),
    )
    lists = {"incidents": Table("处置的安全事件", _QUARANTINED, report.details["incidents"])}
    return main, lists


def repeat_offenders_tables(report: Report) -> tuple[Table, dict[str, Table]]:
    main = Table(
        "多次发生安全事件的单位",
        (*_UNIT, Column("vms", "涉及虚拟机数", "VMs"), *_OFFENCES),
        report.rows,
        Chart(f"安全事件超过 {report.totals['threshold']} 起的单位", "unit_name", ("incidents",), "起"),
    )
    lists = {
        "vms": Table(
            "多次发生安全事件的虚拟机",
            (Column("vm_name", "虚拟机", "VM"), *_UNIT, *_OFFENCES),
            report.details["vms"],
        )
    }
    return main, lists


def overdue_findings_tables(report: Report) -> tuple[Table, dict[str, Table]]:
    main = Table(
        "超期未整改的安全隐患",
        _OVERDUE,
        report.rows,
        Chart("各单位超期未整改隐患数", "unit_name", ("overdue", "fixed_late"), "项"),
    )
    lists = {"findings": Table("超期隐患清单", _FINDING, report.details["findings"])}
    return main, lists


def compliance_tables(report: Report) -> tuple[Table, dict[str, Table]]:
    main = Table(
        "各单位网络安全合规情况",
        _COMPLIANCE,
        report.rows,
        Chart("各单位待办事项", "unit_name", ("overdue_findings", "open_violations", "open_incidents"), "项"),
    )
    return main, {}


# ---- quota use (the committee's sheet; GET /reports/quota is the report of its own) -------------------

_QUOTA = (
    *_UNIT,
    *(
        Column(f"{d}_{p}", f"{DIMENSION_ZH[d]}{zh}", f"{d} {p}")
        for d in DIMENSIONS
        for p, zh in PART_ZH.items()
    ),
    Column("vcpus_used_percent", "vCPU使用率(%)", "vCPUs used (%)"),
    Column("memory_used_percent", "内存使用率(%)", "Memory used (%)"),
    Column("over_quota", "超出配额", "Over quota"),
)


def quota_tables(report: Report) -> tuple[Table, dict[str, Table]]:
    # The headers are those of GET /reports/quota?format=xlsx, so both sheets read alike.
    main = Table(
        "配额使用情况",
        _QUOTA,
        report.rows,
        Chart(
            "各单位 vCPU 配额与使用", "unit_name", ("vcpus_quota", "vcpus_used", "vcpus_requested"), "vCPU"
        ),
    )
    return main, {}


# ---- the committee's workbook -------------------------------------------------------------------------

_COVER = (Column("figure", "指标", "Figure"), Column("value", "数值", "Value"))
_BUILDERS = {
    "compliance": compliance_tables,
    "provisioning": provisioning_tables,
    "incidents_monthly": incidents_monthly_tables,
    "quarantine": quarantine_tables,
    "repeat_offenders": repeat_offenders_tables,
    "overdue_findings": overdue_findings_tables,
    "quota": quota_tables,
}


class CommitteeFormat(enum.StrEnum):
    """The committee's report also comes as its one-page PDF summary (the other reports do not)."""

    JSON = "json"
    CSV = "csv"
    XLSX = "xlsx"
    PDF = "pdf"


_COMMITTEE_FILES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/csv": {}, tables.XLSX_TYPE: {}, "application/pdf": {}}}
}


@router.get(
    "/reports/committee",
    summary="Every report of the period for the committee: a cover of key figures, then each report; "
    "format=pdf: the one-page summary with charts",
    responses=_COMMITTEE_FILES,
)
def committee_report(
    session: SessionDep,
    actor: CurrentActor,
    period: PeriodDep,
    threshold: Annotated[int, Query(ge=1, le=1000, description="Repeat offenders: more than this")] = 1,
    unit_id: UnitParam = None,
    format: Annotated[CommitteeFormat, Query(description="json, csv, xlsx or pdf")] = CommitteeFormat.JSON,
) -> Any:
    if format == CommitteeFormat.PDF:
        rendered = summary.committee_pdf(session, actor, period, threshold, unit_id)
        name = f"{file_stem('committee', period)}.pdf"
        return Response(
            rendered.pdf,
            media_type="application/pdf",
            headers={
                "Content-Disposition": f'attachment; filename="{name}"',
                "X-Document-Id": rendered.document_id,
            },
        )
    result = service.committee(session, actor, period, threshold, unit_id)
    cover = Table("汇总", _COVER, result.cover)
    built = {key: _BUILDERS[key](report) for key, report in result.reports.items()}
    p = result.period
    if format == CommitteeFormat.JSON:
        return {
            "title": "网络安全工作委员会报表",
            "period": p.out(),
            "generated_at": result.generated_at.isoformat(),
            "cover": {row["key"]: row["value"] for row in result.cover},
            "reports": {
                key: {**tables.to_json(main), "totals": result.reports[key].totals}
                for key, (main, _) in built.items()
            },
        }
    # The main tables first (each with its chart), then their lists; a CSV holds the cover.
    sheets = [main for main, _ in built.values()] + [t for _, lists in built.values() for t in lists.values()]
    return tables.download(cover, Format(format.value), file_stem("committee", p), more=sheets)
