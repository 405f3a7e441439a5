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
from vmportal.paperwork import repository, wording
from vmportal.paperwork.models import GeneratedPaper, PaperKind
from vmportal.paperwork.pdf import (
    RenderedDocument,
    beijing_now,
    chinese_date,
    new_document_id,
    render_pdf,
)
from vmportal.unit import service as unit_service
from vmportal.unit.models import DocumentKind

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
