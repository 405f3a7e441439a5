"""Center settings: read by every signed-in user (units need to know whether requests need
endorsement), changed by center_admin only."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

from policies.roles import Role
from vmportal.center import service
from vmportal.identity.deps import CurrentUser, CurrentWho, require
from vmportal.kit.http import SessionDep

router = APIRouter(tags=["center"])


class CenterSettingsOut(BaseModel):
    endorsement_required: bool
    unmatched_alert_mail: str = Field(
        description="How the center hears of alerts that match no VM: each, digest (hourly) or off"
    )
    maintenance_notice_hours: int = Field(
        description="Hours ahead a planned outage must be announced (rule maintenance_notice)"
    )


class CenterSettingsUpdate(BaseModel):
    """Only the keys given change; an unknown key is a 422 naming it."""

    model_config = ConfigDict(extra="forbid")

    endorsement_required: StrictBool | None = None
    unmatched_alert_mail: StrictStr | None = Field(None, description="each, digest or off")
    maintenance_notice_hours: StrictInt | None = Field(None, description="1 to 720 hours")


@router.get("/settings", response_model=CenterSettingsOut)
def read_settings(session: SessionDep, _: CurrentUser) -> dict[str, Any]:
    return service.all_settings(session)


@router.put("/settings", response_model=CenterSettingsOut, dependencies=[require(Role.CENTER_ADMIN)])
def put_settings(body: CenterSettingsUpdate, session: SessionDep, who: CurrentWho) -> dict[str, Any]:
    for key, value in body.model_dump(exclude_unset=True).items():
        if value is not None:
            service.set_setting(session, who, key, value)
    return service.all_settings(session)
