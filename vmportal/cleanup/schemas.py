"""The clean-up API's shapes. Inputs are bounded and strict (extra fields refused), so bad input is a
422 naming the field and the rule."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from vmportal.cleanup.models import CampaignState, ItemAction, ItemKind, ItemStatus
from vmportal.unit.schemas import Hostname, LongText, Name, Phone, SystemPurpose, _no_control

MAX_ITEMS = 1000

CampaignName = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), AfterValidator(_no_control)
]
Note = Annotated[str, StringConstraints(strip_whitespace=True, max_length=500), AfterValidator(_no_control)]
Reason = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500), AfterValidator(_no_control)
]
ItemId = Annotated[int, Field(ge=1, le=2**31 - 1)]


class CampaignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: CampaignName = Field(description="e.g. 2026年度网站域名、虚拟机清理")
    deadline_at: AwareDatetime = Field(description="when units must have answered (with a time zone)")
    grace_days: int = Field(
        default=14,
        ge=0,
        le=90,
        description="days after the deadline before unconfirmed VMs may be powered off",
    )


class UnitProgress(BaseModel):
    unit_id: int
    unit_code: str
    unit_name: str
    total: int
    pending: int
    confirmed: int
    corrected: int
    retired: int
    complete: bool


class CampaignOut(BaseModel):
    id: int
    name: str
    state: CampaignState
    deadline_at: datetime
    grace_days: int
    grace_ends_at: datetime
    opened_at: datetime
    deadline_processed_at: datetime | None
    closed_at: datetime | None
    total: int
    pending: int
    units_complete: int
    units: list[UnitProgress] = Field(description="per unit the caller may see (a unit's users: their own)")


class ItemOut(BaseModel):
    id: int
    campaign_id: int
    unit_id: int
    kind: ItemKind
    target_id: int
    domain: str
    label: str
    status: ItemStatus
    decided_at: datetime | None
    decided_by: int | None
    via: str
    note: str
    changes: dict[str, Any] | None
    action: ItemAction
    action_at: datetime | None
    current: dict[str, Any] | None = Field(description="the VM, system or domain as it is now (None: gone)")


class ItemList(BaseModel):
    items: list[ItemOut]
    total: int


class ConfirmIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: Note = ""


class CorrectIn(BaseModel):
    """A correction: the fields of the item's kind only (a VM: ``system_id``; a system: its
    registration fields; a domain: ``domain``), and a note saying what changed."""

    model_config = ConfigDict(extra="forbid")

    note: Note = ""
    system_id: ItemId | None = None
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)] | None = None
    purpose: SystemPurpose | None = None
    description: LongText | None = None
    responsible_person: Name | None = None
    responsible_phone: Phone | None = None
    domain: Hostname | None = None


class RetireIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Reason


class ConfirmAllIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    unit_id: ItemId | None = Field(default=None, description="the center only: which unit's items")
    note: Note = ""


class ActionIn(BaseModel):
    """The center's step after the deadline: which items (all that qualify when omitted), and why."""

    model_config = ConfigDict(extra="forbid")

    item_ids: Annotated[list[ItemId], Field(max_length=MAX_ITEMS)] | None = None
    reason: Reason


class ActionOut(BaseModel):
    campaign_id: int
    action: ItemAction
    items: list[ItemOut]
