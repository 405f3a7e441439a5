"""A paper the portal generated for a unit to print, sign and stamp, and the signed scan filed for it."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlmodel import Field, SQLModel

from vmportal.kit.db import UTCDateTime, utcnow


class PaperKind(enum.StrEnum):
    # The same values as unit.models.DocumentKind: the signed scan is filed as that kind.
    COMMITMENT_LETTER = "commitment_letter"
    VM_AGREEMENT = "vm_agreement"


class GeneratedPaper(SQLModel, table=True):
    """One generated PDF: its id printed in the footer, the SHA-256 of its bytes, and the scan filed for it.

    ``sha256`` names the file under ``upload_dir`` (content-addressed like every upload), so the
    original can be downloaded again byte for byte and compared with the signed scan.
    """

    __tablename__ = "paperwork_document"

    id: int | None = Field(default=None, primary_key=True)
    unit_id: int = Field(foreign_key="unit.id", index=True)
    kind: str = Field(max_length=32)
    document_id: str = Field(max_length=64, unique=True)
    sha256: str = Field(max_length=64)
    size: int
    generated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    generated_by: int | None = Field(default=None, foreign_key="user.id")
    signed_document_id: int | None = Field(default=None, foreign_key="document.id")
    signed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
