"""One report table, three encodings: JSON rows, CSV (UTF-8 with BOM) and XLSX with a native chart.

Every report builds a :class:`Table` (columns with their Chinese headers, plain rows) and hands it
here, so the three formats cannot disagree: the spreadsheet a committee opens shows the same figures
as the JSON the pages read.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from typing import Any

from openpyxl import Workbook
from openpyxl.chart import BarChart, Reference
from openpyxl.styles import Font, PatternFill
from openpyxl.utils import get_column_letter

XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


@dataclass(frozen=True)
class Column:
    key: str
    header_zh: str
    header_en: str


@dataclass(frozen=True)
class Chart:
    """A bar chart of ``value_keys`` per row, labelled by ``label_key``."""

    title: str
    label_key: str
    value_keys: tuple[str, ...]
    y_title: str = ""


@dataclass
class Table:
    title: str
    columns: tuple[Column, ...]
    rows: list[dict[str, Any]] = field(default_factory=list)
    chart: Chart | None = None


def _cell(value: Any) -> Any:
    if isinstance(value, bool):
        return "是" if value else "否"
    if isinstance(value, (list, tuple)):
        return "、".join(str(v) for v in value)
    return value


def to_csv(table: Table) -> bytes:
    # The BOM makes Excel read UTF-8 (it otherwise assumes the local ANSI code page and garbles Chinese).
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow([c.header_zh for c in table.columns])
    for row in table.rows:
        writer.writerow([_cell(row.get(c.key)) for c in table.columns])
    return ("\ufeff" + buf.getvalue()).encode("utf-8")


def to_xlsx(table: Table) -> bytes:
    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = table.title[:31]  # Excel's limit for a sheet name
    fill = PatternFill("solid", fgColor="DDEBF7")
    for i, column in enumerate(table.columns, start=1):
        cell = ws.cell(row=1, column=i, value=column.header_zh)
        cell.font, cell.fill = Font(bold=True), fill
        ws.column_dimensions[get_column_letter(i)].width = max(12, 2 * len(column.header_zh) + 2)
    for r, row in enumerate(table.rows, start=2):
        for i, column in enumerate(table.columns, start=1):
            ws.cell(row=r, column=i, value=_cell(row.get(column.key)))
    ws.freeze_panes = "A2"
    if table.chart and table.rows:
        keys = [c.key for c in table.columns]
        chart = BarChart()
        chart.title, chart.y_axis.title = table.chart.title, table.chart.y_title
        last = len(table.rows) + 1
        for key in table.chart.value_keys:
            col = keys.index(key) + 1
            chart.add_data(Reference(ws, min_col=col, min_row=1, max_row=last), titles_from_data=True)
        label_col = keys.index(table.chart.label_key) + 1
        chart.set_categories(Reference(ws, min_col=label_col, min_row=2, max_row=last))
        chart.width, chart.height = 24, 12
        ws.add_chart(chart, f"{get_column_letter(len(keys) + 2)}2")
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()
