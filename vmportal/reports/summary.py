"""The one-page PDF summary for the 网络安全工作委员会: the paperwork figures and the units still short.

It renders through the paperwork domain's PDF helper (same fonts, footer with a document id), and
lists at most ``MAX_ROWS`` units, the incomplete first, so the page stays one page.
"""

from __future__ import annotations

from sqlmodel import Session

from policies.roles import Actor
from vmportal.paperwork.pdf import RenderedDocument, beijing_now, chinese_date, new_document_id, render_pdf
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
