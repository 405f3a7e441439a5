"""The one-page PDF summaries for the 网络安全工作委员会, through the paperwork domain's PDF helper
(same fonts, footer with a document id):

- :func:`committee_summary` (``GET /reports/summary.pdf``): the paperwork figures now and the units
  still short, at most ``MAX_ROWS`` of them, the incomplete first, so the page stays one page;
- :func:`committee_pdf` (``GET /reports/committee?format=pdf``): the committee's reports of a period
  on one page, the key figures, three charts and the units most short.
"""

from __future__ import annotations

from typing import Any

from markupsafe import Markup
from sqlmodel import Session

from policies.compromise import CATEGORY_NAMES_ZH
from policies.roles import Actor
from vmportal.kit.scope import sees_every_unit
from vmportal.paperwork.pdf import RenderedDocument, beijing_now, chinese_date, new_document_id, render_pdf
from vmportal.reports import charts, service
from vmportal.reports.paperwork_report import paperwork_table

MAX_ROWS = 25
TITLE = "网络安全综合治理材料报送情况汇总"


def committee_summary(session: Session, actor: Actor) -> RenderedDocument:
    table = paperwork_table(session, actor)
    rows = sorted(table.rows, key=lambda r: (r["complete"], -r["missing_items"], r["unit_code"]))
    yes = {True: "是", False: "否"}
    shown = [
        [
            r["unit_name"],
            yes[r["registry_complete"]],
            yes[r["commitment_letter_signed"]],
            yes[r["vm_agreement_signed"]],
            r["systems_registered"],
            yes[r["complete"]],
        ]
        for r in rows[:MAX_ROWS]
    ]
    when = beijing_now()
    complete = sum(1 for r in table.rows if r["complete"])
    return render_pdf(
        "committee_summary.html",
        {
            "as_of": chinese_date(when.date()),
            "total": len(table.rows),
            "complete": complete,
            "incomplete": len(table.rows) - complete,
            "systems": sum(r["systems_registered"] for r in table.rows),
            "awaiting": sum(r["papers_awaiting_scan"] for r in table.rows),
            "columns": ["单位名称", "通讯录完整", "承诺书", "协议书", "信息系统数", "材料齐全"],
            "rows": shown,
            "more": max(0, len(rows) - MAX_ROWS),
        },
        kind="summary",
        document_id=new_document_id("SUM", "center", when),
        generated_at=when,
        title=TITLE,
        filename=f"{TITLE}-{when:%Y%m%d}.pdf",
    )


# ---- the committee's one-page summary of a period ----------------------------------------------------

REPORT_TITLE = "网络安全工作委员会报表摘要"
#: At most this many units in the table of the units most short; fewer if the page would overflow.
MAX_SHORT_UNITS = 12


def _shown(value: Any) -> str:
    # The same text as the JSON's value (50.0 stays "50.0"), so a reader can check one against the other.
    return "—" if value is None or value == "" else str(value)


def _shortfall(row: dict[str, Any]) -> int:
    """How much a unit has outstanding: missing paperwork items, overdue findings, open forbidden
    services, unconfirmed clean-up items, late deliveries, quarantined VMs."""
    return (
        len(row["missing"])
        + row["overdue_findings"]
        + row["open_violations"]
        + row["cleanup_unconfirmed"]
        + row["late_deliveries"]
        + row["quarantined"]
    )


def short_units(result: service.CommitteeReports) -> list[dict[str, Any]]:
    """The units the committee should look at first: not compliant before compliant, then the most
    outstanding; units with nothing outstanding and compliant are left out."""
    over = {r["unit_code"]: r["over_quota"] for r in result.reports["quota"].rows}
    rows = [
        {**r, "shortfall": _shortfall(r), "over_quota": over.get(r["unit_code"], [])}
        for r in result.reports["compliance"].rows
    ]
    rows = [r for r in rows if not r["compliant"] or r["shortfall"] or r["over_quota"]]
    return sorted(rows, key=lambda r: (r["compliant"], -r["shortfall"], r["unit_code"]))


def _charts(result: service.CommitteeReports) -> dict[str, Markup]:
    monthly = result.reports["incidents_monthly"]
    prov = result.reports["provisioning"]
    by_origin = [
        charts.Series(f"{zh}", [r[f"origin_{key}"] for r in monthly.rows])
        for key, zh in service.ORIGINS.items()
    ]
    months = [r["month"][2:] for r in monthly.rows]  # "26-01": twelve fit under the bars
    totals = monthly.totals
    categories = sorted(
        ((CATEGORY_NAMES_ZH[c], totals[f"category_{c.value}"]) for c in service.CATEGORIES),
        key=lambda kv: -kv[1],
    )
    delivered = sorted(
        (r for r in prov.rows if r["delivered"]), key=lambda r: (-r["delivered"], r["unit_code"])
    )
    share = prov.totals["on_time_percent"]
    return {
        "monthly": charts.columns("每月安全事件数（按来源）", months, by_origin),
        "categories": charts.rows(
            "期间安全事件类别",
            [name for name, _n in categories if _n],
            [charts.Series("事件数", [n for _name, n in categories if n])],
        ),
        "on_time": charts.rows(
            f"虚拟机按期交付（按期率 {_shown(share)}%）",
            [r["unit_name"] for r in delivered],
            [
                charts.Series("按期", [r["on_time"] for r in delivered]),
                charts.Series("逾期", [r["late"] for r in delivered]),
            ],
        ),
    }


def committee_pdf(
    session: Session, actor: Actor, p: service.Period, threshold: int = 1, unit_id: int | None = None
) -> RenderedDocument:
    """One A4 page for the 网络安全工作委员会: the cover's key figures of the period (the same values
    as ``GET /reports/committee``), three charts (incidents per month by origin, by category,
    deliveries on time per unit) and the units most short. The actor sees what the JSON shows them
    (a unit's users: their own unit)."""
    result = service.committee(session, actor, p, threshold, unit_id)
    figures = [
        (row["figure"], _shown(row["value"])) for row in result.cover[1:]
    ]  # the period is the subtitle
    yes = {True: "是", False: "否", None: "—"}
    short = short_units(result)
    when = beijing_now()
    document_id = new_document_id("CRS", "center" if unit_id is None else str(unit_id), when)
    # Whose figures these are: every unit only for a reader who sees every unit and asked for no one.
    names = "、".join(r["unit_name"] for r in result.reports["compliance"].rows)
    scope = "全部单位" if unit_id is None and sees_every_unit(actor.role) else names
    context = {
        "period": f"{p.since.isoformat()} 至 {p.until.isoformat()}（北京时间）",
        "scope": scope,
        "pairs": [figures[i : i + 2] for i in range(0, len(figures), 2)],
        "charts": _charts(result),
        "columns": [
            "单位名称",
            "缺少材料",
            "超期隐患",
            "违规服务",
            "处置中",
            "逾期交付",
            "清理未确认",
            "超出配额",
            "达标",
        ],
        "units_total": len(result.reports["compliance"].rows),
    }

    def render(limit: int) -> RenderedDocument:
        context["rows"] = [
            [
                r["unit_name"],
                len(r["missing"]),
                r["overdue_findings"],
                r["open_violations"],
                r["quarantined"],
                r["late_deliveries"],
                r["cleanup_unconfirmed"],
                "、".join(r["over_quota"]) or "—",
                yes[r["compliant"]],
            ]
            for r in short[:limit]
        ]
        context["short_total"] = len(short)
        context["more"] = max(0, len(short) - limit)
        return render_pdf(
            "committee_report.html",
            context,
            kind="summary",
            document_id=document_id,
            generated_at=when,
            title=REPORT_TITLE,
            filename=f"{REPORT_TITLE}-{p.since:%Y%m%d}-{p.until:%Y%m%d}.pdf",
        )

    # One page is the promise: a long unit name wrapping onto two lines may push the table over, so
    # the table gives up rows (the full list is in the workbook) until the page holds.
    limit = MAX_SHORT_UNITS
    rendered = render(limit)
    while rendered.pages > 1 and limit > 0:
        limit -= 2 if limit > 1 else 1
        rendered = render(limit)
    return rendered
