"""Rectification reports (整改报告): the unit reports what it fixed, the center accepts (the VM is
restored) or rejects it (the VM stays suspended, the unit reports again).

Only the unit's own security administrator submits (plan 三3: the unit rectifies; agreement §8), only
on a contained incident, one report under review at a time. Attachments follow the signed documents'
limits (``VMPORTAL_UPLOAD_MAX_BYTES`` each → 413; ``VMPORTAL_UPLOAD_TYPES`` plus plain text → 415,
checked on the declared type **and** the content: PDF/PNG/JPEG by their signature, text by being
UTF-8 or GB18030 text without NUL bytes) and are stored content-addressed like them.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from sqlmodel import Session

from policies.power import SecurityState
from policies.roles import Actor, Role
from vmportal.audit.service import Who, record
from vmportal.incidents import repository
from vmportal.incidents.containment import RESTORE_TASK
from vmportal.incidents.lifecycle import INCIDENT, Action
from vmportal.incidents.models import (
    Incident,
    Rectification,
    RectificationAttachment,
    RectificationState,
    Resolution,
    RestoreState,
)
from vmportal.incidents.service import find_incident, snapshot
from vmportal.incidents.timeline import add_event, sync_vm_security_state
from vmportal.jobs import outbox
from vmportal.kit import db, errors
from vmportal.kit.scope import ensure_visible
from vmportal.kit.settings import Settings, get_settings
from vmportal.unit.service import safe_filename, sniff

TEXT_TYPE = "text/plain"
MAX_FILES = 10
MAX_TEXT = 20_000
_CHUNK = 64 * 1024


def allowed_types(settings: Settings) -> list[str]:
    types = [t.lower() for t in settings.upload_types]
    return types if TEXT_TYPE in types else [*types, TEXT_TYPE]


@dataclass(frozen=True)
class Upload:
    filename: str | None
    content_type: str
    stream: IO[bytes]


@dataclass(frozen=True)
class Stored:
    filename: str
    content_type: str
    size: int
    sha256: str


def _looks_like_text(data: bytes) -> bool:
    if b"\x00" in data:
        return False
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            data.decode(encoding)
        except UnicodeDecodeError:
            continue
        return True
    return False


def store_attachment(upload: Upload, index: int, settings: Settings) -> Stored:
    """Check and keep one attachment under ``upload_dir/<sha256>`` (temporary file, then rename)."""
    where = f"files[{index}]"
    allowed = allowed_types(settings)
    declared = (upload.content_type or "").split(";")[0].strip().lower()
    if declared not in allowed:
        raise errors.UnsupportedMediaType(
            f"{where}: content type '{declared or 'none'}' is not accepted (allowed: {', '.join(allowed)})",
            message_zh=f"{where}：不接受的文件类型“{declared or '无'}”（允许：{', '.join(allowed)}）",
            field=where,
            rule="content_type",
            allowed=allowed,
        )
    settings.upload_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=settings.upload_dir, prefix=".upload-", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        size = 0
        with os.fdopen(fd, "wb") as out:
            while chunk := upload.stream.read(_CHUNK):
                size += len(chunk)
                if size > settings.upload_max_bytes:
                    raise errors.PayloadTooLarge(
                        f"{where}: larger than the limit of {settings.upload_max_bytes} bytes",
                        message_zh=f"{where}：文件超过 {settings.upload_max_bytes} 字节的上限",
                        field=where,
                        rule="max_size",
                        limit=settings.upload_max_bytes,
                    )
                digest.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if size == 0:
            raise errors.InvalidField(where, "empty", "the file is empty", message_zh="文件为空")
        if declared == TEXT_TYPE:
            proven = _looks_like_text(tmp.read_bytes())
            found = TEXT_TYPE if proven else None
        else:
            with tmp.open("rb") as f:
                found = sniff(f.read(16))
        if found != declared:
            raise errors.UnsupportedMediaType(
                f"{where}: declared as {declared} but its content is {found or 'something else'}",
                message_zh=f"{where}：声明为 {declared}，但文件内容不符",
                field=where,
                rule="magic_bytes",
                allowed=allowed,
            )
        sha = digest.hexdigest()
        os.replace(tmp, settings.upload_dir / sha)
        return Stored(safe_filename(upload.filename), declared, size, sha)
    finally:
        tmp.unlink(missing_ok=True)


def attachment_path(attachment: RectificationAttachment, settings: Settings | None = None) -> Path:
    return (settings or get_settings()).upload_dir / attachment.sha256


def _unit_admin_of(actor: Actor, incident: Incident) -> None:
    if actor.role is not Role.UNIT_ADMIN or actor.unit_id != incident.unit_id:
        raise errors.Forbidden(
            "only the unit's security administrator submits its rectification report",
            message_zh="整改报告由本单位的网络安全管理员提交",
            role=actor.role.value,
        )


def submit(
    session: Session,
    actor: Actor,
    who: Who,
    incident_id: int,
    text: str,
    uploads: list[Upload],
    settings: Settings | None = None,
) -> Rectification:
    settings = settings or get_settings()
    find_incident(session, actor, incident_id)  # 404 for another unit's, before anything else
    incident, vm = repository.lock_incident(session, incident_id)
    _unit_admin_of(actor, incident)
    text = text.strip()
    if not text:
        raise errors.InvalidField(
            "text", "required", "describe what was found and fixed", message_zh="请填写整改情况"
        )
    if len(text) > MAX_TEXT:
        raise errors.InvalidField("text", "max_length", f"at most {MAX_TEXT} characters")
    if len(uploads) > MAX_FILES:
        raise errors.InvalidField("files", "max_items", f"at most {MAX_FILES} attachments")
    before = snapshot(incident)
    INCIDENT.move(session, incident, Action.SUBMIT_RECTIFICATION)
    stored = [store_attachment(u, i, settings) for i, u in enumerate(uploads)]
    rect = Rectification(
        incident_id=incident_id,
        unit_id=incident.unit_id,
        vm_id=incident.vm_id,
        text=text,
        submitted_by=actor.user_id,
    )
    session.add(rect)
    session.flush()
    assert rect.id is not None
    for f in stored:
        session.add(
            RectificationAttachment(
                rectification_id=rect.id,
                filename=f.filename,
                content_type=f.content_type,
                size=f.size,
                sha256=f.sha256,
            )
        )
    if vm is not None:
        sync_vm_security_state(session, vm.id or 0, who, reason=f"rectification report {rect.id} submitted")
    add_event(
        session,
        incident,
        "rectification_submitted",
        actor=who.actor,
        en=f"Rectification report {rect.id} submitted by {who.actor} ({len(stored)} attachment(s)); "
        "waiting for the center to verify it.",
        zh=f"{who.actor} 提交了整改报告（编号 {rect.id}，附件 {len(stored)} 个），等待信息中心核实。",
        data={"rectification_id": rect.id},
    )
    record(
        session,
        who,
        "security.rectification.submit",
        "incident",
        incident_id,
        before=before,
        after={**snapshot(incident), "rectification_id": rect.id, "attachments": [f.sha256 for f in stored]},
        unit_id=incident.unit_id,
    )
    return rect


def _open_rectification(session: Session, rect_id: int, action: str) -> tuple[Rectification, Incident]:
    rect = session.get(Rectification, rect_id)
    if rect is None:
        raise errors.NotFound("rectification", rect_id)
    incident, _vm = repository.lock_incident(session, rect.incident_id)
    session.refresh(rect)
    if rect.state != RectificationState.SUBMITTED:
        raise errors.StateConflict(
            "rectification",
            rect.state,
            action,
            message=f"rectification report {rect_id} is {rect.state}: "
            f"only a submitted report can be {action}ed",
        )
    return rect, incident


def accept(session: Session, actor: Actor, who: Who, rect_id: int, comment: str = "") -> Rectification:
    """The center verified the report: the VM is restored by the task, then the incident closes."""
    rect, incident = _open_rectification(session, rect_id, "accept")
    before = snapshot(incident)
    INCIDENT.move(
        session,
        incident,
        Action.ACCEPT,
        resolution=Resolution.RECTIFIED.value,
        resolution_reason=comment[:2000],
        resolved_by=actor.user_id,
        restore_state=RestoreState.PENDING.value,
    )
    rect.state = RectificationState.ACCEPTED.value
    rect.decided_by = actor.user_id
    rect.decided_at = db.utcnow()
    rect.decision_reason = comment[:2000]
    session.add(rect)
    outbox.enqueue(session, RESTORE_TASK, incident_id=incident.id)
    add_event(
        session,
        incident,
        "rectification_accepted",
        actor=who.actor,
        en=f"Rectification report {rect.id} accepted by {who.actor}"
        + (f": {comment}" if comment else "")
        + ". The VM is being restored.",
        zh=f"信息中心（{who.actor}）核实通过整改报告 {rect.id}"
        + (f"：{comment}" if comment else "")
        + "，正在恢复虚拟机。",
        data={"rectification_id": rect.id},
    )
    record(
        session,
        who,
        "security.rectification.accept",
        "incident",
        incident.id,
        before=before,
        after={**snapshot(incident), "rectification_id": rect.id},
        detail=comment,
        unit_id=incident.unit_id,
    )
    return rect


def reject(session: Session, actor: Actor, who: Who, rect_id: int, reason: str) -> Rectification:
    """The report does not convince: the VM stays suspended and the unit reports again."""
    rect, incident = _open_rectification(session, rect_id, "reject")
    before = snapshot(incident)
    INCIDENT.move(session, incident, Action.REJECT)
    rect.state = RectificationState.REJECTED.value
    rect.decided_by = actor.user_id
    rect.decided_at = db.utcnow()
    rect.decision_reason = reason[:2000]
    session.add(rect)
    if incident.vm_id is not None:
        sync_vm_security_state(
            session, incident.vm_id, who, reason=f"rectification report {rect.id} rejected"
        )
    add_event(
        session,
        incident,
        "rectification_rejected",
        actor=who.actor,
        en=f"Rectification report {rect.id} rejected by {who.actor}: {reason}. The VM stays suspended; "
        "please fix the remaining problems and submit a new report.",
        zh=f"信息中心（{who.actor}）驳回整改报告 {rect.id}：{reason}。虚拟机保持暂停，请继续整改后重新提交。",
        data={"rectification_id": rect.id},
    )
    record(
        session,
        who,
        "security.rectification.reject",
        "incident",
        incident.id,
        before=before,
        after={
            **snapshot(incident),
            "rectification_id": rect.id,
            "security_state": SecurityState.SUSPENDED.value,
        },
        detail=reason,
        unit_id=incident.unit_id,
    )
    return rect


# ---- reading ----------------------------------------------------------------------------------------


def list_for_incident(session: Session, actor: Actor, incident_id: int) -> list[Rectification]:
    find_incident(session, actor, incident_id)
    return repository.rectifications_of(session, incident_id)


def get_rectification(session: Session, actor: Actor, rect_id: int) -> Rectification:
    rect = session.get(Rectification, rect_id)
    if rect is None:
        raise errors.NotFound("rectification", rect_id)
    ensure_visible(actor, rect.unit_id, "rectification", rect_id)
    return rect


def attachments(session: Session, rect_ids: list[int]) -> dict[int, list[RectificationAttachment]]:
    out: dict[int, list[RectificationAttachment]] = {i: [] for i in rect_ids}
    for a in repository.attachments_of(session, rect_ids):
        out.setdefault(a.rectification_id, []).append(a)
    return out


def get_attachment(
    session: Session, actor: Actor, rect_id: int, attachment_id: int
) -> RectificationAttachment:
    get_rectification(session, actor, rect_id)
    attachment = session.get(RectificationAttachment, attachment_id)
    if attachment is None or attachment.rectification_id != rect_id:
        raise errors.NotFound("attachment", attachment_id)
    return attachment
