"""The paperwork API's shapes."""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel

from vmportal.paperwork.models import PaperKind
from vmportal.unit.schemas import Name


class GenerateIn(BaseModel):
    kind: PaperKind


class PaperOut(BaseModel):
    id: int
    unit_id: int
    kind: PaperKind
    document_id: str
    sha256: str
    size: int
    generated_at: datetime
    signed_document_id: int | None
    signed_at: datetime | None


class SignedForm(BaseModel):
    """The form fields of a signed scan's upload (the file itself is the ``file`` part)."""

    signer: Name
    signed_on: date
