"""The audit log's answer shapes (read by center_admin and the auditor)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel


class AuditEntryOut(BaseModel):
    id: int
    at: datetime
    actor_id: int | None
    actor: str
    actor_role: str
    unit_id: int | None
    action: str
    target_type: str
    target_id: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    result: str
    detail: str
    request_id: str
    hash: str


class AuditPage(BaseModel):
    items: list[AuditEntryOut]
    total: int
    limit: int
    offset: int


class VerifyOut(BaseModel):
    ok: bool
    checked: int
    broken_at: int | None
    reason: str
