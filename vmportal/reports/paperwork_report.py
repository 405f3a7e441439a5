"""Paperwork compliance per unit (issue 14, point 3): registry complete, letter and agreement signed,
information systems registered, generated papers still waiting for their signed scan.

Read through the unit and paperwork services; the unit domain's own rule (``policies.paperwork``)
decides what "complete" means, so this report and the request form's refusal never disagree.
"""

from __future__ import annotations

from sqlmodel import Session

from policies.roles import Actor
from vmportal.paperwork import service as paperwork
from vmportal.reports.tables import Chart, Column, Table
from vmportal.unit import service as units

COLUMNS: tuple[Column, ...] = (
    Column("unit_code", "单位代码", "unit code"),
    Column("unit_name", "单位名称", "unit name"),
    Column("registry_complete", "通讯录完整", "registry complete"),
    Column("commitment_letter_signed", "承诺书已签署", "commitment letter signed"),
    Column("vm_agreement_signed", "协议书已签署", "VM agreement signed"),
    Column("systems_registered", "已登记信息系统数", "information systems registered"),
    Column("papers_awaiting_scan", "待回传签署件数", "generated papers awaiting their signed scan"),
    Column("missing_items", "缺少项目数", "missing items"),
    Column("complete", "材料齐全", "paperwork complete"),
    Column("missing", "缺少项目", "missing"),
)


def paperwork_table(session: Session, actor: Actor, *, unit_id: int | None = None) -> Table:
    """The units ``actor`` may see (a unit's users: their own), or only ``unit_id``."""
    table = Table(
        title="各单位材料报送情况",
        columns=COLUMNS,
        chart=Chart("各单位缺少项目数", "unit_name", ("missing_items", "systems_registered"), "项"),
    )
    for unit in units.list_units(session, actor, active=True):
        assert unit.id is not None
        if unit_id is not None and unit.id != unit_id:
            continue
        status = units.paperwork_status(session, unit.id)
        missing = status.missing
        table.rows.append(
            {
                "unit_id": unit.id,
                "unit_code": unit.code,
                "unit_name": unit.name_zh,
                "registry_complete": not any(m.startswith("security_") for m in missing),
                "commitment_letter_signed": "commitment_letter" not in missing,
                "vm_agreement_signed": "vm_agreement" not in missing,
                "systems_registered": len(units.list_systems(session, unit.id)),
                "papers_awaiting_scan": sum(
                    1 for p in paperwork.list_papers(session, unit.id) if p.signed_document_id is None
                ),
                "missing_items": len(missing),
                "complete": status.complete,
                "missing": missing,
            }
        )
    return table
