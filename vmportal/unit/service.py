"""Units and their paperwork: the contact registry, signed documents, information systems, quota.

Services take an already authorised caller (the API checks roles and unit scope) and never commit.
Every change writes an audit row in the same transaction; personal data in those rows is masked.

Other domains call :func:`paperwork_facts` and :func:`agreement_filed_at` (request submission and
its due time).
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import IO, Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from policies.base import Deny
from policies.paperwork import ADMIN_FIELDS, LEAD_FIELDS, ContactFacts, PaperworkFacts, check_paperwork
from policies.paperwork import missing_paperwork as _missing
from policies.roles import ROLE_NAMES_ZH, Actor, Role
from vmportal.audit.service import Who, record
from vmportal.kit import crypto, errors
from vmportal.kit.clock import beijing_today
from vmportal.kit.db import utcnow
from vmportal.kit.scope import CENTER, ensure_visible
from vmportal.kit.settings import Settings, get_settings
from vmportal.unit import accounts, repository
from vmportal.unit.models import Contact, ContactRole, Document, DocumentKind, InformationSystem, Quota, Unit

#: Signatures before this are typing slips, not documents (the campaign itself dates from 2017).
EARLIEST_SIGNATURE = date(2000, 1, 1)
_CHUNK = 64 * 1024

# ---- units ---------------------------------------------------------------------------------------


def unit_snapshot(unit: Unit) -> dict[str, Any]:
    return {"code": unit.code, "name_zh": unit.name_zh, "name_en": unit.name_en, "active": unit.active}


def get_unit(session: Session, unit_id: int) -> Unit:
    unit = repository.get_unit(session, unit_id)
    if unit is None:
        raise errors.NotFound("unit", unit_id)
    return unit


def list_units(session: Session, actor: Actor | None = None, *, active: bool | None = None) -> list[Unit]:
    """The units ``actor`` may see (a unit's users: their own), by code; None: every unit."""
    return repository.list_units(session, actor, active=active)


def visible_unit(session: Session, actor: Actor, unit_id: int) -> Unit:
    """The unit, if ``actor`` may see it; another unit answers 404 as if it did not exist."""
    ensure_visible(actor, unit_id, "unit", unit_id)
    return get_unit(session, unit_id)


def lock_unit(session: Session, unit_id: int) -> Unit:
    """Take the unit's row lock (PostgreSQL; SQLite serialises writers anyway) so that changes to
    its one-per-kind records (registry rows, current documents, accounts) do not race."""
    unit = repository.lock_unit(session, unit_id)
    if unit is None:
        raise errors.NotFound("unit", unit_id)
    return unit


def create_unit(session: Session, who: Who, *, code: str, name_zh: str, name_en: str = "") -> Unit:
    if repository.code_taken(session, code):
        raise errors.Conflict(
            f"unit code '{code}' is taken", message_zh=f"单位代码“{code}”已存在", field="code"
        )
    unit = Unit(code=code, name_zh=name_zh, name_en=name_en)
    session.add(unit)
    try:
        session.flush()
    except IntegrityError:  # created concurrently since the check above
        raise errors.Conflict(
            f"unit code '{code}' is taken", message_zh=f"单位代码“{code}”已存在", field="code"
        ) from None
    assert unit.id is not None
    # Every unit has a quota row from the start (zero until the center grants one), so quota
    # checks never meet a missing row.
    session.add(Quota(unit_id=unit.id))
    record(session, who, "unit.create", "unit", unit.id, after=unit_snapshot(unit), unit_id=unit.id)
    return unit


def update_unit(
    session: Session,
    who: Who,
    unit: Unit,
    *,
    name_zh: str | None = None,
    name_en: str | None = None,
    active: bool | None = None,
) -> Unit:
    before = unit_snapshot(unit)
    if name_zh is not None:
        unit.name_zh = name_zh
    if name_en is not None:
        unit.name_en = name_en
    if active is not None:
        unit.active = active
    after = unit_snapshot(unit)
    if after != before:
        session.add(unit)
        record(session, who, "unit.update", "unit", unit.id, before=before, after=after, unit_id=unit.id)
    return unit


# ---- contact registry ------------------------------------------------------------------------------

#: What each row of the registry must carry (附件1): the same lists the paperwork rule checks.
REQUIRED_FIELDS: dict[ContactRole, tuple[str, ...]] = {
    ContactRole.SECURITY_LEAD: LEAD_FIELDS,
    ContactRole.SECURITY_ADMIN: ADMIN_FIELDS,
}
_CONTACT_FIELDS = ("name", "title", "office_phone", "mobile", "email", "qq", "staff_no", "national_id")


def contact_snapshot(contact: Contact) -> dict[str, Any]:
    """A registry row for the audit log: mobile and national ID masked, never in clear."""
    return {
        "role": contact.role,
        "name": contact.name,
        "title": contact.title,
        "office_phone": contact.office_phone,
        "mobile": crypto.mask(contact.mobile),
        "email": contact.email,
        "qq": contact.qq,
        "staff_no": contact.staff_no,
        "national_id": crypto.mask_national_id(contact.national_id),
    }


def list_contacts(session: Session, unit_id: int) -> list[Contact]:
    return repository.list_contacts(session, unit_id)


def get_contact(session: Session, unit_id: int, role: ContactRole) -> Contact | None:
    return repository.get_contact(session, unit_id, role)


def put_contact(
    session: Session, who: Who, unit_id: int, role: ContactRole, values: dict[str, str | None]
) -> Contact:
    """Record (or replace) one row of the registry. Formats are checked by the schema; here each
    field the row needs must be present, and the lead's row collects no ID number at all."""
    for field in REQUIRED_FIELDS[role]:
        value = values.get(field)
        if value is None or not str(value).strip():
            raise errors.InvalidField(
                field,
                "required",
                f"is required for the {role.value.replace('_', ' ')}",
                message_zh="通讯录该项必填",
            )
    if role == ContactRole.SECURITY_LEAD and values.get("national_id"):
        # Data minimisation: the form asks the ID number of the admin only (附件1).
        raise errors.InvalidField(
            "national_id",
            "not_collected",
            "the registry does not collect the security lead's ID number",
            message_zh="通讯录不收集网络安全负责人的身份证号",
        )
    lock_unit(session, unit_id)
    holder = accounts.holder_of(session, unit_id, role)
    contact = get_contact(session, unit_id, role)
    before = contact_snapshot(contact) if contact is not None else None
    if contact is None:
        contact = Contact(unit_id=unit_id, role=role.value, name="")
    for field in _CONTACT_FIELDS:
        value = values.get(field)
        if field in ("mobile", "national_id"):
            setattr(contact, field, value or None)
        else:
            setattr(contact, field, value or "")
    contact.updated_at = utcnow()
    session.add(contact)
    session.flush()
    after = contact_snapshot(contact)
    if after != before:
        record(
            session,
            who,
            "contact.update" if before else "contact.create",
            "contact",
            contact.id,
            before=before,
            after=after,
            unit_id=unit_id,
            detail=role.value,
        )
    # A row naming another person hands the row's account over (unit.accounts.hand_over).
    accounts.hand_over(session, who, role, holder, contact)
    return contact


# ---- documents -------------------------------------------------------------------------------------

_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"%PDF-", "application/pdf"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
)


def sniff(head: bytes) -> str | None:
    """The content type the file's first bytes prove, or None."""
    for magic, content_type in _MAGIC:
        if head.startswith(magic):
            return content_type
    return None


def safe_filename(name: str | None) -> str:
    base = re.split(r"[\\/]", name or "")[-1]
    base = "".join(c for c in base if ord(c) >= 32 and ord(c) != 127).strip().lstrip(".")
    return base[-255:] or "document"


def document_path(doc: Document, settings: Settings | None = None) -> Path:
    return (settings or get_settings()).upload_dir / doc.sha256


@dataclass(frozen=True)
class StoredFile:
    sha256: str
    size: int
    content_type: str


def store_upload(stream: IO[bytes], declared_type: str, settings: Settings | None = None) -> StoredFile:
    """Check and keep an uploaded file under ``upload_dir/<sha256>``.

    The declared type must be allowed AND proven by the file's first bytes; the size is counted
    while copying, so a lying Content-Length does not help. The file is written to a temporary
    name in the same directory and renamed: a reader never sees half a file. Storage is
    content-addressed, so a file left behind by a rolled-back transaction is harmless (the next
    upload of the same content reuses it).
    """
    settings = settings or get_settings()
    allowed = [t.lower() for t in settings.upload_types]
    declared = (declared_type or "").split(";")[0].strip().lower()
    if declared not in allowed:
        raise errors.UnsupportedMediaType(
            f"file: content type '{declared or 'none'}' is not accepted (allowed: {', '.join(allowed)})",
            message_zh=f"file：不接受的文件类型“{declared or '无'}”（允许：{', '.join(allowed)}）",
            field="file",
            rule="content_type",
            allowed=allowed,
            fields=[{"field": "file", "rule": "content_type", "message": "content type not accepted"}],
        )
    settings.upload_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=settings.upload_dir, prefix=".upload-", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        size = 0
        head = b""
        with os.fdopen(fd, "wb") as out:
            while chunk := stream.read(_CHUNK):
                size += len(chunk)
                if size > settings.upload_max_bytes:
                    raise errors.PayloadTooLarge(
                        f"file: larger than the limit of {settings.upload_max_bytes} bytes",
                        message_zh=f"file：文件超过 {settings.upload_max_bytes} 字节的上限",
                        field="file",
                        rule="max_size",
                        limit=settings.upload_max_bytes,
                    )
                if len(head) < 16:
                    head += chunk[: 16 - len(head)]
                digest.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if size == 0:
            raise errors.InvalidField("file", "empty", "the file is empty", message_zh="文件为空")
        sniffed = sniff(head)
        if sniffed != declared:
            found_en = sniffed or "not a PDF, PNG or JPEG file"
            found_zh = f"为 {sniffed}" if sniffed else "不是 PDF、PNG 或 JPEG"
            raise errors.UnsupportedMediaType(
                f"file: declared as {declared} but its content is {found_en}",
                message_zh=f"file：声明为 {declared}，但文件内容{found_zh}",
                field="file",
                rule="magic_bytes",
                allowed=allowed,
                fields=[
                    {"field": "file", "rule": "magic_bytes", "message": "content does not match its type"}
                ],
            )
        sha = digest.hexdigest()
        os.replace(tmp, settings.upload_dir / sha)
        return StoredFile(sha256=sha, size=size, content_type=declared)
    finally:
        tmp.unlink(missing_ok=True)


def document_snapshot(doc: Document) -> dict[str, Any]:
    return {
        "kind": doc.kind,
        "signer": doc.signer,
        "signed_on": doc.signed_on.isoformat(),
        "filename": doc.filename,
        "content_type": doc.content_type,
        "size": doc.size,
        "sha256": doc.sha256,
    }


def check_signed_on(signed_on: date) -> None:
    if signed_on > beijing_today():
        raise errors.InvalidField(
            "signed_on",
            "not_future",
            "a signature date cannot be in the future",
            message_zh="签署日期不能晚于今天",
        )
    if signed_on < EARLIEST_SIGNATURE:
        raise errors.InvalidField(
            "signed_on",
            "too_old",
            f"must be on or after {EARLIEST_SIGNATURE}",
            message_zh=f"签署日期不能早于 {EARLIEST_SIGNATURE}",
        )


def ensure_may_file_documents(actor: Actor, unit_id: int) -> None:
    """Who files a unit's signed papers: the center's staff, and the lead of this very unit (the
    主要负责人 signs them); 403 naming the roles for anyone else (the API's rule for
    POST /units/{id}/documents, for the pages)."""
    if actor.role in CENTER or (actor.role is Role.UNIT_LEAD and actor.unit_id == unit_id):
        return
    allowed = ", ".join([*(r.value for r in CENTER), f"the unit's {Role.UNIT_LEAD.value}"])
    raise errors.Forbidden(
        f"role '{actor.role}' may not change the unit's signed documents (allowed: {allowed})",
        message_zh=f"{ROLE_NAMES_ZH[actor.role]}无权提交本单位已签署的材料（允许：信息中心工作人员、本单位网络安全负责人）",
        role=actor.role.value,
    )


def file_document(
    session: Session,
    who: Who,
    unit_id: int,
    *,
    kind: DocumentKind,
    signer: str,
    signed_on: date,
    filename: str | None,
    content_type: str,
    stream: IO[bytes],
    settings: Settings | None = None,
) -> Document:
    """File a signed paper; it supersedes the unit's current document of the same kind."""
    check_signed_on(signed_on)
    stored = store_upload(stream, content_type, settings)
    unit = lock_unit(session, unit_id)
    now = utcnow()
    previous = current_documents(session, unit_id, kind)
    for old in previous:
        old.superseded_at = now
        session.add(old)
    doc = Document(
        unit_id=unit_id,
        kind=kind.value,
        signer=signer,
        signed_on=signed_on,
        filed_at=now,
        filed_by=who.actor_id,
        filename=safe_filename(filename),
        content_type=stored.content_type,
        size=stored.size,
        sha256=stored.sha256,
    )
    session.add(doc)
    session.flush()
    notes = []
    if who.role in {r.value for r in CENTER}:
        # The unit handed the paper in at the counter: the row says who filed it for which unit.
        notes.append(f"filed by {who.role} {who.actor} on behalf of unit {unit.code}")
    if previous:
        notes.append(f"supersedes document {', '.join(str(p.id) for p in previous)}")
    record(
        session,
        who,
        "document.file",
        "document",
        doc.id,
        unit_id=unit_id,
        before=document_snapshot(previous[-1]) if previous else None,
        after=document_snapshot(doc),
        detail="; ".join(notes),
    )
    return doc


def current_documents(session: Session, unit_id: int, kind: DocumentKind) -> list[Document]:
    return repository.current_documents(session, unit_id, kind)


def list_documents(session: Session, unit_id: int, *, include_superseded: bool = True) -> list[Document]:
    return repository.list_documents(session, unit_id, include_superseded=include_superseded)


def get_document(session: Session, unit_id: int, doc_id: int) -> Document:
    doc = repository.get_document(session, doc_id)
    if doc is None or doc.unit_id != unit_id:
        raise errors.NotFound("document", doc_id)
    return doc


# ---- paperwork (rule "paperwork") ------------------------------------------------------------------


def _facts_of(contact: Contact | None) -> ContactFacts | None:
    if contact is None:
        return None
    return ContactFacts(
        name=contact.name,
        title=contact.title,
        office_phone=contact.office_phone,
        mobile=contact.mobile,
        email=contact.email,
        qq=contact.qq,
        staff_no=contact.staff_no,
        national_id=contact.national_id,
    )


def paperwork_facts(session: Session, unit_id: int) -> PaperworkFacts:
    """The plain facts ``policies.paperwork.check_paperwork`` decides on, for one unit."""
    on_file = repository.kinds_on_file(session, unit_id)
    return PaperworkFacts(
        security_lead=_facts_of(get_contact(session, unit_id, ContactRole.SECURITY_LEAD)),
        security_admin=_facts_of(get_contact(session, unit_id, ContactRole.SECURITY_ADMIN)),
        commitment_letter_on_file=DocumentKind.COMMITMENT_LETTER.value in on_file,
        vm_agreement_on_file=DocumentKind.VM_AGREEMENT.value in on_file,
    )


def agreement_filed_at(session: Session, unit_id: int) -> datetime | None:
    """When the unit's current (not superseded) VM service agreement was filed; None without one.

    The provisioning deadline runs from the later of a request's submission and this moment."""
    return repository.agreement_filed_at(session, unit_id)


@dataclass(frozen=True)
class PaperworkStatus:
    complete: bool
    missing: list[str]
    agreement_filed_at: datetime | None
    message_zh: str
    message_en: str


def paperwork_status(session: Session, unit_id: int) -> PaperworkStatus:
    facts = paperwork_facts(session, unit_id)
    verdict = check_paperwork(facts)
    missing = _missing(facts)
    return PaperworkStatus(
        complete=verdict.allowed and not missing,
        missing=missing,
        agreement_filed_at=agreement_filed_at(session, unit_id),
        message_zh=verdict.message_zh if isinstance(verdict, Deny) else verdict.reason_zh,
        message_en=verdict.message_en if isinstance(verdict, Deny) else verdict.reason_en,
    )


# ---- information systems -----------------------------------------------------------------------------


def system_snapshot(system: InformationSystem) -> dict[str, Any]:
    return {
        "name": system.name,
        "purpose": system.purpose,
        "description": system.description,
        "domains": list(system.domains),
        "responsible_person": system.responsible_person,
        "responsible_phone": system.responsible_phone,
    }


def list_systems(session: Session, unit_id: int) -> list[InformationSystem]:
    return repository.list_systems(session, unit_id)


def get_system(session: Session, unit_id: int, system_id: int) -> InformationSystem:
    system = repository.get_system(session, system_id)
    if system is None or system.unit_id != unit_id:
        raise errors.NotFound("information system", system_id)
    return system


def _dedupe(domains: list[str]) -> list[str]:
    return list(dict.fromkeys(domains))


def create_system(session: Session, who: Who, unit_id: int, values: dict[str, Any]) -> InformationSystem:
    system = InformationSystem(
        unit_id=unit_id,
        name=values["name"],
        purpose=str(values["purpose"]),
        description=values.get("description") or "",
        domains=_dedupe(values.get("domains") or []),
        responsible_person=values["responsible_person"],
        responsible_phone=values.get("responsible_phone") or "",
    )
    session.add(system)
    session.flush()
    record(
        session,
        who,
        "system.create",
        "information_system",
        system.id,
        after=system_snapshot(system),
        unit_id=unit_id,
    )
    return system


def update_system(
    session: Session, who: Who, system: InformationSystem, changes: dict[str, Any]
) -> InformationSystem:
    before = system_snapshot(system)
    for field, value in changes.items():
        if value is None:
            continue
        if field == "domains":
            value = _dedupe(value)
        elif field == "purpose":
            value = str(value)
        setattr(system, field, value)
    after = system_snapshot(system)
    if after != before:
        session.add(system)
        record(
            session,
            who,
            "system.update",
            "information_system",
            system.id,
            before=before,
            after=after,
            unit_id=system.unit_id,
        )
    return system


#: How the refusal to delete a system names the records that still point at it.
_REFERRERS_EN = {"vm": "VMs", "vm_request": "VM requests"}
_REFERRERS_ZH = {"vm": "虚拟机", "vm_request": "虚拟机申请"}


def delete_system(session: Session, who: Who, system: InformationSystem) -> None:
    assert system.id is not None
    # VMs and VM requests (upper domains) name the system by foreign key; unit does not import them.
    named_by = repository.referencing_tables(session, "information_system", system.id)
    if named_by:
        names_en = ", ".join(_REFERRERS_EN.get(t, t) for t in named_by)
        names_zh = "、".join(_REFERRERS_ZH.get(t, "其他记录") for t in named_by)
        raise errors.Conflict(
            f"information system {system.id} is named by {names_en} and cannot be deleted",
            message_zh=f"信息系统 {system.id} 已被{names_zh}引用，不能删除",
            resource="information system",
        )
    record(
        session,
        who,
        "system.delete",
        "information_system",
        system.id,
        before=system_snapshot(system),
        unit_id=system.unit_id,
    )
    session.delete(system)


# ---- quota --------------------------------------------------------------------------------------------

_QUOTA_FIELDS = ("max_vms", "max_vcpus", "max_memory_gib", "max_disk_gib")


def get_quota(session: Session, unit_id: int) -> Quota:
    """The unit's quota; a unit without a row has a quota of zero (nothing may be requested)."""
    return repository.get_quota(session, unit_id) or Quota(unit_id=unit_id)


def set_quota(session: Session, who: Who, unit_id: int, values: dict[str, int]) -> Quota:
    quota = repository.get_quota(session, unit_id)
    before = {f: getattr(quota, f) for f in _QUOTA_FIELDS} if quota is not None else None
    if quota is None:
        quota = Quota(unit_id=unit_id)
    for field in _QUOTA_FIELDS:
        setattr(quota, field, int(values[field]))
    after = {f: getattr(quota, f) for f in _QUOTA_FIELDS}
    if after != before:
        quota.updated_at = utcnow()
        session.add(quota)
        record(session, who, "quota.update", "quota", unit_id, before=before, after=after, unit_id=unit_id)
    return quota
