"""One report table, three encodings: JSON rows, CSV (UTF-8 with BOM) and XLSX with a native chart.

Every report builds a :class:`Table` (columns with their Chinese headers, plain rows) and hands it
here, so the three formats cannot disagree: the spreadsheet a committee opens shows the same figures
as the JSON the pages read.
"""

from __future__ import annotations

import csv
import enum
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from fastapi import Response
from openpyxl import Workbook
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
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


def _xlsx_cell(value: Any) -> Any:
    # A control character (stored text may hold one: a unit name, a finding's title) is not allowed in
    # the XML of a worksheet; openpyxl would refuse the whole file. Shown as U+FFFD, the rest kept.
    value = _cell(value)
    if isinstance(value, str):
        return ILLEGAL_CHARACTERS_RE.sub("\ufffd", value)
    return value


#: A text cell starting with one of these is read as a formula by a spreadsheet program opening a CSV.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    # Stored text (a unit's name, a finding's title) must not run as a formula on the committee's
    # machine ("CSV injection"): such a cell gets a leading apostrophe, which the spreadsheet hides.
    value = _cell(value)
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def to_csv(table: Table) -> bytes:
    # The BOM makes Excel read UTF-8 (it otherwise assumes the local ANSI code page and garbles Chinese).
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow([c.header_zh for c in table.columns])
    for row in table.rows:
        writer.writerow([csv_cell(row.get(c.key)) for c in table.columns])
    return ("\ufeff" + buf.getvalue()).encode("utf-8")


def _sheet_title(title: str, taken: set[str]) -> str:
    # Excel's rules for a sheet name: at most 31 characters, none of []:*?/\, unique in the workbook.
    clean = "".join("_" if ch in "[]:*?/\\" else ch for ch in title)[:31] or "Sheet"
    name, n = clean, 2
    while name in taken:
        suffix = f" ({n})"
        name, n = clean[: 31 - len(suffix)] + suffix, n + 1
    taken.add(name)
    return name


def _fill(ws: Any, table: Table) -> None:
    fill = PatternFill("solid", fgColor="DDEBF7")
    for i, column in enumerate(table.columns, start=1):
        cell = ws.cell(row=1, column=i, value=column.header_zh)
        cell.font, cell.fill = Font(bold=True), fill
        ws.column_dimensions[get_column_letter(i)].width = max(12, 2 * len(column.header_zh) + 2)
    for r, row in enumerate(table.rows, start=2):
        for i, column in enumerate(table.columns, start=1):
            cell = ws.cell(row=r, column=i, value=_xlsx_cell(row.get(column.key)))
            if cell.data_type == "f":  # openpyxl reads text starting with "=" as a formula: keep it text
                cell.data_type = "s"
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


def to_xlsx(table: Table, *more: Table) -> bytes:
    """The workbook of ``table``, and of each of ``more`` on a sheet of its own (a report's lists)."""
    wb = Workbook()
    ws = wb.active
    assert ws is not None
    taken: set[str] = set()
    ws.title = _sheet_title(table.title, taken)
    _fill(ws, table)
    for extra in more:
        _fill(wb.create_sheet(_sheet_title(extra.title, taken)), extra)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


class Format(enum.StrEnum):
    """The three encodings every report answers in (``?format=``); anything else is a 422."""

    JSON = "json"
    CSV = "csv"
    XLSX = "xlsx"


def to_json(table: Table, rows_key: str = "rows") -> dict[str, Any]:
    return {
        "title": table.title,
        "columns": [{"key": c.key, "zh": c.header_zh, "en": c.header_en} for c in table.columns],
        rows_key: table.rows,
    }


def download(table: Table, format: Format, stem: str, more: Sequence[Table] = ()) -> Response:
    """The CSV or XLSX file of ``table`` as an attachment named ``stem`` plus its extension. ``more``:
    further tables, each a sheet of the XLSX (a CSV holds one table: ``table`` only)."""
    if format == Format.CSV:
        body, media, name = to_csv(table), "text/csv; charset=utf-8", f"{stem}.csv"
    elif format == Format.XLSX:
        body, media, name = to_xlsx(table, *more), XLSX_TYPE, f"{stem}.xlsx"
    else:  # JSON is the route's own answer model, never a download
        raise ValueError(format)
    return Response(body, media_type=media, headers={"Content-Disposition": f'attachment; filename="{name}"'})
