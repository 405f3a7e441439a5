"""Every query of the paperwork domain."""

from __future__ import annotations

from sqlmodel import Session, col, select

from vmportal.paperwork.models import GeneratedPaper


def by_document_id(session: Session, unit_id: int, document_id: str) -> GeneratedPaper | None:
    return session.exec(
        select(GeneratedPaper).where(
            GeneratedPaper.unit_id == unit_id, GeneratedPaper.document_id == document_id
        )
    ).first()


def by_sha256(session: Session, unit_id: int, sha256: str) -> GeneratedPaper | None:
    return session.exec(
        select(GeneratedPaper)
        .where(GeneratedPaper.unit_id == unit_id, GeneratedPaper.sha256 == sha256)
        .order_by(col(GeneratedPaper.id).desc())
    ).first()


def list_for_unit(session: Session, unit_id: int) -> list[GeneratedPaper]:
    return list(
        session.exec(
            select(GeneratedPaper)
            .where(GeneratedPaper.unit_id == unit_id)
            .order_by(col(GeneratedPaper.id).desc())
        )
    )
