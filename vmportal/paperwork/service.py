"""The paper round trip: generate a unit's 承诺书 / 虚拟机服务协议书 as PDF, file the signed scan for it.

The generated PDF is kept under ``upload_dir/<sha256>`` (content-addressed like every upload) and
recorded with the id its footer prints. The signed scan names the original by that id or by the
original's SHA-256; it is filed through the unit domain (so it supersedes the unit's previous paper
and completes the paperwork exactly as a hand-filed one does) and linked to the original.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from datetime import date
from typing import IO, Any

from sqlmodel import Session

from vmportal.audit.service import Who, record
from vmportal.kit import errors
from vmportal.kit.db import utcnow
from vmportal.kit.settings import Settings, get_settings
from vmportal.paperwork import repository, sheets, wording
from vmportal.paperwork.facts import name_key
from vmportal.paperwork.models import GeneratedPaper, PaperKind
from vmportal.paperwork.pdf import (
    RenderedDocument,
    beijing_now,
    chinese_date,
    new_document_id,
    render_pdf,
)
from vmportal.unit import service as unit_service
from vmportal.unit.models import ContactRole, DocumentKind

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class _Paper:
    template: str
    prefix: str  # of the document id
    title: str
    annex: str


_PAPERS: dict[PaperKind, _Paper] = {
    PaperKind.COMMITMENT_LETTER: _Paper(
        "commitment_letter.html", "CL", wording.COMMITMENT_TITLE, wording.COMMITMENT_ANNEX
    ),
    PaperKind.VM_AGREEMENT: _Paper(
        "vm_agreement.html", "VA", wording.AGREEMENT_TITLE, wording.AGREEMENT_ANNEX
    ),
}


def paper_snapshot(paper: GeneratedPaper) -> dict[str, Any]:
    return {
        "kind": paper.kind,
        "document_id": paper.document_id,
        "sha256": paper.sha256,
        "size": paper.size,
        "signed_document_id": paper.signed_document_id,
    }


def render(kind: PaperKind, *, unit_code: str, unit_name: str, on: date | None = None) -> RenderedDocument:
    """The PDF of one paper, pre-filled with the unit's name and the date (today in Beijing by default)."""
    spec = _PAPERS[kind]
    when = beijing_now()
    day = on or when.date()
    return render_pdf(
        spec.template,
        {"w": wording, "unit_name": unit_name, "date_text": chinese_date(day)},
        kind=kind.value,
        document_id=new_document_id(spec.prefix, unit_code, when),
        generated_at=when,
        title=spec.title,
        filename=f"{spec.annex}-{spec.title}-{unit_name}.pdf",
    )


def _keep(pdf: bytes, sha256: str, settings: Settings) -> None:
    # Written under a temporary name and renamed, like an upload: a reader never sees half a file.
    settings.upload_dir.mkdir(parents=True, exist_ok=True)
    target = settings.upload_dir / sha256
    if target.exists():
        return
    fd, tmp = tempfile.mkstemp(dir=settings.upload_dir, prefix=".paper-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(pdf)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def generate(
    session: Session,
    who: Who,
    unit_id: int,
    kind: PaperKind,
    *,
    on: date | None = None,
    settings: Settings | None = None,
) -> tuple[GeneratedPaper, RenderedDocument]:
    settings = settings or get_settings()
    unit = unit_service.get_unit(session, unit_id)
    rendered = render(kind, unit_code=unit.code, unit_name=unit.name_zh, on=on)
    _keep(rendered.pdf, rendered.sha256, settings)
    paper = GeneratedPaper(
        unit_id=unit_id,
        kind=kind.value,
        document_id=rendered.document_id,
        sha256=rendered.sha256,
        size=len(rendered.pdf),
        generated_by=who.actor_id,
    )
    session.add(paper)
    session.flush()
    record(
        session, who, "paperwork.generate", "document", paper.id, unit_id=unit_id, after=paper_snapshot(paper)
    )
    return paper, rendered


def list_papers(session: Session, unit_id: int) -> list[GeneratedPaper]:
    return repository.list_for_unit(session, unit_id)


def find(session: Session, unit_id: int, ref: str) -> GeneratedPaper:
    """A generated paper by the id its footer prints or by the SHA-256 of its bytes."""
    ref = ref.strip()
    paper = (
        repository.by_sha256(session, unit_id, ref.lower())
        if _SHA256.match(ref.lower())
        else repository.by_document_id(session, unit_id, ref)
    )
    if paper is None:
        raise errors.NotFound("document", ref)
    return paper


def original_bytes(paper: GeneratedPaper, settings: Settings | None = None) -> bytes:
    path = (settings or get_settings()).upload_dir / paper.sha256
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise errors.Gone(
            f"document {paper.document_id}: the generated file is no longer kept; generate a new one",
            message_zh=f"文档 {paper.document_id}：生成的文件已不在，请重新生成",
        ) from None


def file_signed(
    session: Session,
    who: Who,
    unit_id: int,
    ref: str,
    *,
    signer: str,
    signed_on: date,
    filename: str | None,
    content_type: str,
    stream: IO[bytes],
    settings: Settings | None = None,
) -> GeneratedPaper:
    """File the signed scan of a generated paper; it completes that part of the unit's paperwork."""
    paper = find(session, unit_id, ref)
    before = paper_snapshot(paper)
    doc = unit_service.file_document(
        session,
        who,
        unit_id,
        kind=DocumentKind(paper.kind),
        signer=signer,
        signed_on=signed_on,
        filename=filename,
        content_type=content_type,
        stream=stream,
        settings=settings,
    )
    if doc.sha256 == paper.sha256:
        # The very bytes the portal produced carry no signature or stamp: refusing rolls the filing back.
        raise errors.InvalidField(
            "file",
            "signed_scan",
            f"file: this is the unsigned document {paper.document_id} itself;"
            " upload the scan of the signed, stamped paper",
            message_zh=f"file：上传的是未签署的原文档 {paper.document_id}，请上传签字盖章后的扫描件",
        )
    paper.signed_document_id = doc.id
    paper.signed_at = utcnow()
    session.add(paper)
    session.flush()
    record(
        session,
        who,
        "paperwork.file_signed",
        "document",
        paper.id,
        unit_id=unit_id,
        before=before,
        after=paper_snapshot(paper),
        detail=f"signed scan {doc.sha256} filed as document {doc.id} for original {paper.sha256}",
    )
    return paper


# ---- the contact registry as a spreadsheet (附件1) ------------------------------------------------


class ImportRefused(errors.PortalError):
    """422: the files have problems; nothing was written. ``problems`` names each by file/sheet/row/column."""

    status = 422
    code = "import_problems"


def _current_contacts(session: Session, unit_id: int) -> dict[ContactRole, dict[str, Any]]:
    current: dict[ContactRole, dict[str, Any]] = {}
    for contact in unit_service.list_contacts(session, unit_id):
        current[ContactRole(contact.role)] = {
            name: getattr(contact, name)
            for name in ("name", "title", "office_phone", "mobile", "email", "qq", "staff_no", "national_id")
        }
    return current


def contact_template(session: Session, unit_id: int, *, show_personal: bool) -> tuple[bytes, str]:
    """The 附件1 template pre-filled with the unit's registry, and a file name for it."""
    unit = unit_service.get_unit(session, unit_id)
    content = sheets.contact_template(
        unit.code, unit.name_zh, _current_contacts(session, unit_id), show_personal=show_personal
    )
    return content, f"附件1-网络安全联络通讯录-{unit.name_zh}.xlsx"


@dataclass(frozen=True)
class Upload:
    filename: str
    content: bytes


def import_contacts(
    session: Session, who: Who, uploads: list[Upload], *, only_unit: int | None, commit: bool
) -> dict[str, Any]:
    """Check one or many filled registries; with ``commit`` write them all, or nothing if any has a problem.

    ``only_unit`` is the unit a unit user may import for (None: the center, any unit). A file is
    matched to its unit by the unit code the template carries; re-importing replaces each role's row.
    """
    units = {u.code: u for u in unit_service.list_units(session)}
    problems: list[sheets.Problem] = []
    files: list[dict[str, Any]] = []
    planned: list[tuple[int, ContactRole, dict[str, str | None]]] = []
    seen: dict[int, str] = {}
    for upload in uploads:
        name = upload.filename
        try:
            code = sheets.read_contacts(upload.content, filename=name).unit_code
            unit = units.get(code)
            current = _current_contacts(session, unit.id) if unit and unit.id is not None else {}
            sheet = sheets.read_contacts(upload.content, current, filename=name)
        except sheets.NotXlsx as exc:
            problems.append(sheets.Problem("", None, None, exc.reason_zh, exc.reason_en, name))
            files.append({"file": name, "unit_code": None, "unit_id": None, "rows": 0})
            continue
        problems += sheet.problems
        unit = units.get(sheet.unit_code)
        if sheet.unit_code and (unit is None or (only_unit is not None and unit.id != only_unit)):
            # Another unit's code reads as unknown to a unit user: it cannot learn which codes exist.
            problems.append(
                sheets.Problem(
                    sheets.CONTACT_SHEET,
                    2,
                    "单位代码",
                    f"未知的单位代码“{sheet.unit_code}”",
                    f"unknown unit code '{sheet.unit_code}'",
                    name,
                )
            )
            unit = None
        if unit is not None and unit.id is not None:
            if unit.id in seen:
                problems.append(
                    sheets.Problem(
                        sheets.CONTACT_SHEET,
                        2,
                        "单位代码",
                        f"与文件“{seen[unit.id]}”是同一单位",
                        f"the same unit as file '{seen[unit.id]}'",
                        name,
                    )
                )
            seen[unit.id] = name
            planned += [(unit.id, role, values) for role, values in sheet.rows.items()]
        files.append(
            {
                "file": name,
                "unit_code": sheet.unit_code or None,
                "unit_id": unit.id if unit else None,
                "rows": len(sheet.rows),
            }
        )
    report: dict[str, Any] = {
        "committed": False,
        "files": files,
        "problems": [p.as_dict() for p in problems],
    }
    if not commit:
        return report
    if problems:
        raise ImportRefused(
            f"{len(problems)} problem(s) in the files; nothing was imported",
            message_zh=f"文件中有 {len(problems)} 处问题，未导入任何数据",
            **report,
        )
    for unit_id, role, values in planned:
        unit_service.put_contact(session, who, unit_id, role, values)
    record(
        session,
        who,
        "paperwork.import_contacts",
        "unit",
        None,
        detail=f"{len(uploads)} file(s), {len(planned)} row(s)",
    )
    report["committed"] = True
    return report


# ---- the information-system registration form as a spreadsheet (附件4) ---------------------------


def _systems(session: Session, unit_id: int) -> list[dict[str, Any]]:
    return [
        {
            "key": s.id,
            "name": s.name,
            "purpose": s.purpose,
            "domains": list(s.domains or []),
            "responsible_person": s.responsible_person,
            "responsible_phone": s.responsible_phone,
            "description": s.description,
        }
        for s in unit_service.list_systems(session, unit_id)
    ]


def system_template(session: Session, unit_id: int) -> tuple[bytes, str]:
    unit = unit_service.get_unit(session, unit_id)
    content = sheets.system_template(unit.code, unit.name_zh, _systems(session, unit_id))
    return content, f"附件4-信息系统登记表-{unit.name_zh}.xlsx"


def import_systems(
    session: Session, who: Who, uploads: list[Upload], *, only_unit: int | None, commit: bool
) -> dict[str, Any]:
    """Check one or many filled 附件4 files; with ``commit`` apply them all, or nothing on any problem.

    A row with the template's 编号 updates that system (保留=否 removes it); a row without one updates
    the unit's system of the same name (compared by ``facts.name_key``) or registers a new system.
    """
    units = {u.code: u for u in unit_service.list_units(session)}
    problems: list[sheets.Problem] = []
    files: list[dict[str, Any]] = []
    plan: list[tuple[str, int, Any, dict[str, Any]]] = []  # (verb, unit_id, system or None, values)
    for upload in uploads:
        name = upload.filename
        try:
            sheet = sheets.read_systems(upload.content, filename=name)
        except sheets.NotXlsx as exc:
            problems.append(sheets.Problem("", None, None, exc.reason_zh, exc.reason_en, name))
            files.append({"file": name, "unit_code": None, "unit_id": None, "rows": 0})
            continue
        problems += sheet.problems
        unit = units.get(sheet.unit_code)
        if sheet.unit_code and (unit is None or (only_unit is not None and unit.id != only_unit)):
            problems.append(
                sheets.Problem(
                    sheets.SYSTEM_SHEET,
                    2,
                    "单位代码",
                    f"未知的单位代码“{sheet.unit_code}”",
                    f"unknown unit code '{sheet.unit_code}'",
                    name,
                )
            )
            unit = None
        counts = {"create": 0, "update": 0, "delete": 0}
        if unit is not None and unit.id is not None:
            existing = {s.id: s for s in unit_service.list_systems(session, unit.id)}
            by_name = {name_key(s.name): s for s in existing.values()}
            used: set[int] = set()
            for row, key, keep, values in sheet.rows:
                system = existing.get(key) if key is not None else by_name.get(name_key(values["name"]))
                if key is not None and system is None:
                    problems.append(
                        sheets.Problem(
                            sheets.SYSTEM_SHEET,
                            row,
                            "编号",
                            f"本单位没有编号为 {key} 的系统",
                            f"the unit has no system number {key}",
                            name,
                        )
                    )
                    continue
                if system is not None and system.id in used:
                    problems.append(
                        sheets.Problem(
                            sheets.SYSTEM_SHEET,
                            row,
                            "编号",
                            "同一系统出现在多行",
                            "the same system on several rows",
                            name,
                        )
                    )
                    continue
                if system is not None and system.id is not None:
                    used.add(system.id)
                verb = "delete" if not keep else ("update" if system is not None else "create")
                counts[verb] += 1
                plan.append((verb, unit.id, system, values))
        files.append(
            {
                "file": name,
                "unit_code": sheet.unit_code or None,
                "unit_id": unit.id if unit else None,
                **counts,
            }
        )
    report: dict[str, Any] = {"committed": False, "files": files, "problems": [p.as_dict() for p in problems]}
    if not commit:
        return report
    if problems:
        raise ImportRefused(
            f"{len(problems)} problem(s) in the files; nothing was imported",
            message_zh=f"文件中有 {len(problems)} 处问题，未导入任何数据",
            **report,
        )
    for verb, unit_id, system, values in plan:
        if verb == "create":
            unit_service.create_system(session, who, unit_id, values)
        elif verb == "update":
            unit_service.update_system(session, who, system, values)
        else:
            unit_service.delete_system(session, who, system)
    record(
        session,
        who,
        "paperwork.import_systems",
        "unit",
        None,
        detail=f"{len(uploads)} file(s), {len(plan)} row(s)",
    )
    report["committed"] = True
    return report
