"""The 网络安全联络通讯录 (附件1) as an XLSX file: the template out, a filled one read back.

Reading checks every cell with the same pydantic types the JSON API uses (``unit.schemas.ContactIn``:
national ID checksum, mobile, e-mail …) and the same required fields as ``unit.service.put_contact``,
and names each problem by sheet, row, column and reason, in both languages, so a college office can
fix its file in one pass. Nothing here touches the database.
"""

from __future__ import annotations

import io
import re
import zipfile
from dataclasses import dataclass, field
from typing import Any

from openpyxl import Workbook, load_workbook
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.datavalidation import DataValidation
from pydantic import ValidationError

from vmportal.kit.crypto import mask, mask_national_id
from vmportal.paperwork.facts import PURPOSE_NAMES_ZH, ROLE_NAMES_ZH, name_key
from vmportal.unit.models import ContactRole
from vmportal.unit.schemas import ContactIn, SystemIn, SystemPurpose
from vmportal.unit.service import REQUIRED_FIELDS

CONTACT_SHEET = "网络安全联络通讯录"
#: Column order of the paper form; the field each column fills.
CONTACT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("role", "角色"),
    ("name", "姓名"),
    ("title", "职务"),
    ("office_phone", "办公电话"),
    ("mobile", "移动电话"),
    ("email", "邮箱地址"),
    ("qq", "QQ"),
    ("staff_no", "工号"),
    ("national_id", "身份证号"),
)
HEADER_ROW = 4
FIRST_ROW = 5
_ROLE_BY_NAME = {name: role for role, name in ROLE_NAMES_ZH.items()}
MAX_UNPACKED = 50 * 1024 * 1024
_XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


@dataclass(frozen=True)
class Problem:
    sheet: str
    row: int | None
    column: str | None  # the column's header as printed ("身份证号"), or None for the whole sheet
    reason_zh: str
    reason_en: str
    file: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "sheet": self.sheet,
            "row": self.row,
            "column": self.column,
            "reason_zh": self.reason_zh,
            "reason_en": self.reason_en,
        }


@dataclass
class ContactSheet:
    """What one filled registry file says: the unit it names and its rows, or the problems found."""

    unit_code: str
    rows: dict[ContactRole, dict[str, str | None]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)


def contact_template(
    unit_code: str, unit_name: str, current: dict[ContactRole, dict[str, Any]], *, show_personal: bool
) -> bytes:
    """The template pre-filled with the registry as it stands (mobile and ID masked unless allowed)."""
    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = CONTACT_SHEET
    ws["A1"] = "附件1　网络安全联络通讯录"
    ws["A1"].font = Font(bold=True, size=14)
    ws["A2"], ws["B2"], ws["C2"], ws["D2"] = "单位代码", unit_code, "单位：", unit_name
    ws["A3"] = "说明：请勿修改单位代码；移动电话、身份证号显示为掩码时保持不变即沿用原值。"
    head_fill = PatternFill("solid", fgColor="DDEBF7")
    for i, (_, header) in enumerate(CONTACT_COLUMNS, start=1):
        cell = ws.cell(row=HEADER_ROW, column=i, value=header)
        cell.font, cell.fill, cell.alignment = Font(bold=True), head_fill, Alignment(horizontal="center")
        ws.column_dimensions[get_column_letter(i)].width = 22 if header in ("邮箱地址", "身份证号") else 14
    for offset, role in enumerate((ContactRole.SECURITY_LEAD, ContactRole.SECURITY_ADMIN)):
        row = FIRST_ROW + offset
        values = dict(current.get(role, {}))
        if not show_personal:
            values["mobile"] = mask(values.get("mobile"))
            values["national_id"] = mask_national_id(values.get("national_id"))
        ws.cell(row=row, column=1, value=ROLE_NAMES_ZH[role])
        for i, (name, _) in enumerate(CONTACT_COLUMNS[1:], start=2):
            cell = ws.cell(row=row, column=i, value=values.get(name) or None)
            cell.number_format = "@"  # text: an ID or a phone number is not a number (no 3.2E+17)
    roles = DataValidation(
        type="list", formula1='"' + ",".join(ROLE_NAMES_ZH.values()) + '"', allow_blank=False
    )
    roles.error, roles.errorTitle = "请从下拉列表选择角色", "角色"
    ws.add_data_validation(roles)
    roles.add(f"A{FIRST_ROW}:A{FIRST_ROW + 1}")
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


class NotXlsx(Exception):
    """The upload is not an XLSX workbook; ``reason_zh`` / ``reason_en`` say what it is instead."""

    def __init__(self, reason_en: str, reason_zh: str) -> None:
        super().__init__(reason_en)
        self.reason_en, self.reason_zh = reason_en, reason_zh


def _open(content: bytes) -> Any:
    if content.startswith(b"\xd0\xcf\x11\xe0"):
        raise NotXlsx(
            "this is an old Excel .xls file; save it as .xlsx (Excel Workbook) and upload again",
            "这是旧版 Excel .xls 文件，请另存为 .xlsx（Excel 工作簿）后重新上传",
        )
    if not content.startswith(b"PK"):
        raise NotXlsx(
            "not an .xlsx workbook (a .csv or text file is not accepted); use the downloaded template",
            "不是 .xlsx 工作簿（不接受 .csv 或文本文件），请使用下载的模板填写",
        )
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as archive:
            unpacked = sum(info.file_size for info in archive.infolist())
        if unpacked > MAX_UNPACKED:
            # A few kilobytes that unpack to gigabytes would exhaust memory before a cell is read.
            raise NotXlsx(
                f"the workbook unpacks to {unpacked} bytes, over the limit of {MAX_UNPACKED // 2**20} MB",
                f"工作簿解压后为 {unpacked} 字节，超过 {MAX_UNPACKED // 2**20} MB 的上限",
            )
        return load_workbook(io.BytesIO(content), data_only=True)
    except NotXlsx:
        raise
    except Exception as exc:
        # Whatever a malformed file makes openpyxl raise (XML, zip, style errors) is the file's fault: 422.
        raise NotXlsx(
            f"the .xlsx file cannot be read ({type(exc).__name__}); save it again from Excel or WPS",
            "无法读取该 .xlsx 文件，请用 Excel 或 WPS 重新保存后上传",
        ) from None


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # a phone typed as a number comes back as 83590001.0
    return str(value).strip()


def read_contacts(
    content: bytes, current: dict[ContactRole, dict[str, Any]] | None = None, *, filename: str = ""
) -> ContactSheet:
    """Parse and check a filled registry. ``current`` lets a masked cell keep the value on file.

    Raises :class:`NotXlsx` for a file that is not a workbook at all; everything else is a problem.
    """
    wb = _open(content)
    sheet = ContactSheet(unit_code="")

    def problem(sheet_name: str, row: int | None, column: str | None, zh: str, en: str) -> None:
        sheet.problems.append(Problem(sheet_name, row, column, zh, en, filename))

    for extra in wb.sheetnames:
        if extra != CONTACT_SHEET:
            problem(extra, None, None, "多余的工作表，未读取", "extra sheet, not read")
    if CONTACT_SHEET not in wb.sheetnames:
        problem(
            CONTACT_SHEET, None, None, "缺少工作表“网络安全联络通讯录”", f"sheet '{CONTACT_SHEET}' is missing"
        )
        return sheet
    ws = wb[CONTACT_SHEET]
    sheet.unit_code = _text(ws["B2"].value)
    if not sheet.unit_code:
        problem(CONTACT_SHEET, 2, "单位代码", "单位代码为空", "the unit code is empty")
    for merged in ws.merged_cells.ranges:
        if merged.max_row >= HEADER_ROW:
            problem(
                CONTACT_SHEET,
                merged.min_row,
                None,
                f"合并单元格 {merged.coord}：请取消合并，每格填一项",
                f"merged cells {merged.coord}: unmerge them, one value per cell",
            )
    headers = [_text(ws.cell(row=HEADER_ROW, column=i).value) for i in range(1, len(CONTACT_COLUMNS) + 1)]
    expected = [h for _, h in CONTACT_COLUMNS]
    if headers != expected:
        problem(
            CONTACT_SHEET,
            HEADER_ROW,
            None,
            f"表头应为：{'、'.join(expected)}",
            f"the header row must read: {', '.join(expected)}",
        )
        return sheet
    for row in range(FIRST_ROW, ws.max_row + 1):
        cells = {
            name: _text(ws.cell(row=row, column=i).value) for i, (name, _) in enumerate(CONTACT_COLUMNS, 1)
        }
        if not any(cells.values()):
            continue
        role = _ROLE_BY_NAME.get(cells.pop("role"))
        if role is None:
            problem(
                CONTACT_SHEET,
                row,
                "角色",
                f"角色须为：{'、'.join(ROLE_NAMES_ZH.values())}",
                "role must be one of the drop-down's values",
            )
            continue
        if role in sheet.rows:
            problem(
                CONTACT_SHEET, row, "角色", "该角色已在前面一行填写", "this role is filled in an earlier row"
            )
            continue
        on_file = (current or {}).get(role, {})
        values: dict[str, str | None] = {}
        for name, value in cells.items():
            masker = mask_national_id if name == "national_id" else mask if name == "mobile" else None
            if masker and value and on_file.get(name) and value == masker(on_file.get(name)):
                value = on_file[name]  # the masked value as downloaded: keep the number on file
            values[name] = value or None
        headers_by_field = dict(CONTACT_COLUMNS)
        try:
            checked = ContactIn.model_validate(values).model_dump()
        except ValidationError as exc:
            for err in exc.errors(include_url=False, include_input=False):
                name = str(err["loc"][0]) if err["loc"] else ""
                problem(
                    CONTACT_SHEET, row, headers_by_field.get(name), f"格式不正确：{err['msg']}", err["msg"]
                )
            continue
        missing = [headers_by_field[f] for f in REQUIRED_FIELDS[role] if not checked.get(f)]
        for column in missing:
            problem(CONTACT_SHEET, row, column, f"{ROLE_NAMES_ZH[role]}的该项必填", "required for this role")
        if role == ContactRole.SECURITY_LEAD and checked.get("national_id"):
            # The lead's row collects no ID number (put_contact refuses one).
            problem(
                CONTACT_SHEET, row, "身份证号", "网络安全负责人无需填写身份证号", "not collected for the lead"
            )
        if not missing:
            sheet.rows[role] = checked
    return sheet


XLSX_TYPE = _XLSX_TYPE


# ---- 附件4 信息系统登记表 -------------------------------------------------------------------------

SYSTEM_SHEET = "信息系统登记表"
SYSTEM_COLUMNS: tuple[tuple[str, str], ...] = (
    ("key", "编号"),  # the portal's id: a row that keeps it updates that system
    ("name", "系统名称"),
    ("purpose", "用途"),
    ("domains", "域名"),
    ("responsible_person", "负责人"),
    ("responsible_phone", "负责人电话"),
    ("description", "说明"),
    ("keep", "保留"),
)
_PURPOSE_BY_NAME = {name: purpose for purpose, name in PURPOSE_NAMES_ZH.items()}
_YES, _NO = "是", "否"


@dataclass
class SystemSheet:
    unit_code: str
    rows: list[tuple[int, int | None, bool, dict[str, Any]]] = field(
        default_factory=list
    )  # row, key, keep, values
    problems: list[Problem] = field(default_factory=list)


def system_template(unit_code: str, unit_name: str, systems: list[dict[str, Any]]) -> bytes:
    """The 附件4 template with the unit's registered systems, one a row, and drop-downs for 用途 and 保留."""
    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = SYSTEM_SHEET
    ws["A1"] = "附件4　各单位信息系统登记表"
    ws["A1"].font = Font(bold=True, size=14)
    ws["A2"], ws["B2"], ws["C2"], ws["D2"] = "单位代码", unit_code, "单位：", unit_name
    ws["A3"] = "说明：新增系统“编号”留空；多个域名用逗号或顿号分隔；“保留”选“否”即申请注销该系统。"
    head_fill = PatternFill("solid", fgColor="DDEBF7")
    for i, (_, header) in enumerate(SYSTEM_COLUMNS, start=1):
        cell = ws.cell(row=HEADER_ROW, column=i, value=header)
        cell.font, cell.fill = Font(bold=True), head_fill
        ws.column_dimensions[get_column_letter(i)].width = (
            30 if header in ("系统名称", "域名", "说明") else 12
        )
    for offset, system in enumerate(systems):
        row = FIRST_ROW + offset
        values = {
            **system,
            "purpose": PURPOSE_NAMES_ZH.get(SystemPurpose(system["purpose"]), system["purpose"]),
            "domains": "，".join(system.get("domains") or []),
            "keep": _YES,
        }
        for i, (name, _) in enumerate(SYSTEM_COLUMNS, start=1):
            ws.cell(row=row, column=i, value=values.get(name) or None).number_format = "@"
    last = FIRST_ROW + max(len(systems), 0) + 200
    purposes = DataValidation(type="list", formula1='"' + ",".join(PURPOSE_NAMES_ZH.values()) + '"')
    keep = DataValidation(type="list", formula1=f'"{_YES},{_NO}"')
    for dv, col in ((purposes, "C"), (keep, "H")):
        dv.error = "请从下拉列表选择"
        ws.add_data_validation(dv)
        dv.add(f"{col}{FIRST_ROW}:{col}{last}")
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def read_systems(content: bytes, *, filename: str = "") -> SystemSheet:
    """Parse and check a filled 附件4 with ``unit.schemas.SystemIn``; raises :class:`NotXlsx`."""
    wb = _open(content)
    sheet = SystemSheet(unit_code="")

    def problem(sheet_name: str, row: int | None, column: str | None, zh: str, en: str) -> None:
        sheet.problems.append(Problem(sheet_name, row, column, zh, en, filename))

    for extra in wb.sheetnames:
        if extra != SYSTEM_SHEET:
            problem(extra, None, None, "多余的工作表，未读取", "extra sheet, not read")
    if SYSTEM_SHEET not in wb.sheetnames:
        problem(SYSTEM_SHEET, None, None, f"缺少工作表“{SYSTEM_SHEET}”", f"sheet '{SYSTEM_SHEET}' is missing")
        return sheet
    ws = wb[SYSTEM_SHEET]
    sheet.unit_code = _text(ws["B2"].value)
    if not sheet.unit_code:
        problem(SYSTEM_SHEET, 2, "单位代码", "单位代码为空", "the unit code is empty")
    for merged in ws.merged_cells.ranges:
        if merged.max_row >= HEADER_ROW:
            problem(
                SYSTEM_SHEET,
                merged.min_row,
                None,
                f"合并单元格 {merged.coord}：请取消合并，每格填一项",
                f"merged cells {merged.coord}: unmerge them, one value per cell",
            )
    headers = [_text(ws.cell(row=HEADER_ROW, column=i).value) for i in range(1, len(SYSTEM_COLUMNS) + 1)]
    expected = [h for _, h in SYSTEM_COLUMNS]
    if headers != expected:
        problem(
            SYSTEM_SHEET,
            HEADER_ROW,
            None,
            f"表头应为：{'、'.join(expected)}",
            f"the header row must read: {', '.join(expected)}",
        )
        return sheet
    header_of = dict(SYSTEM_COLUMNS)
    seen: dict[str, int] = {}
    for row in range(FIRST_ROW, ws.max_row + 1):
        cells = {
            name: _text(ws.cell(row=row, column=i).value) for i, (name, _) in enumerate(SYSTEM_COLUMNS, 1)
        }
        if not any(cells.values()):
            continue
        key: int | None = None
        if cells["key"]:
            if not cells["key"].isdigit():
                problem(
                    SYSTEM_SHEET,
                    row,
                    "编号",
                    "编号须为下载模板中的数字，新增系统请留空",
                    "must be the template's number, or empty",
                )
                continue
            key = int(cells["key"])
        keep_text = cells["keep"] or _YES
        if keep_text not in (_YES, _NO):
            problem(SYSTEM_SHEET, row, "保留", "须为“是”或“否”", "must be 是 or 否")
            continue
        purpose = _PURPOSE_BY_NAME.get(cells["purpose"]) or (
            cells["purpose"] if cells["purpose"] in {p.value for p in SystemPurpose} else None
        )
        values: dict[str, Any] = {
            "name": cells["name"],
            "purpose": purpose or cells["purpose"],
            "domains": [d for d in re.split(r"[,，、;；\s]+", cells["domains"]) if d],
            "responsible_person": cells["responsible_person"],
            "responsible_phone": cells["responsible_phone"] or None,
            "description": cells["description"],
        }
        if keep_text == _NO:
            if key is None:
                problem(
                    SYSTEM_SHEET,
                    row,
                    "保留",
                    "未登记的系统无需填“否”",
                    "an unregistered system cannot be removed",
                )
                continue
            sheet.rows.append((row, key, False, values))
            continue
        if purpose is None:
            problem(
                SYSTEM_SHEET,
                row,
                "用途",
                f"用途须为：{'、'.join(PURPOSE_NAMES_ZH.values())}",
                "purpose must be one of the drop-down's values",
            )
            continue
        try:
            checked = SystemIn.model_validate(values).model_dump()
        except ValidationError as exc:
            for err in exc.errors(include_url=False, include_input=False):
                name = str(err["loc"][0]) if err["loc"] else ""
                problem(SYSTEM_SHEET, row, header_of.get(name), f"格式不正确：{err['msg']}", err["msg"])
            continue
        folded = name_key(checked["name"])
        if folded in seen:
            problem(
                SYSTEM_SHEET,
                row,
                "系统名称",
                f"与第 {seen[folded]} 行重名",
                f"same name as row {seen[folded]}",
            )
            continue
        seen[folded] = row
        sheet.rows.append((row, key, True, checked))
    return sheet
