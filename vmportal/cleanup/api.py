"""The annual clean-up over HTTP (thin: every rule is in :mod:`vmportal.cleanup.service`).

The center opens, steps and closes campaigns; a unit's users list and answer their own unit's items
(another unit's item answers 404); the auditor reads.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from sqlmodel import Session

from policies.roles import Actor
from vmportal.cleanup import service
from vmportal.cleanup.models import (
    CampaignState,
    CleanupCampaign,
    CleanupItem,
    ItemAction,
    ItemKind,
    ItemStatus,
)
from vmportal.cleanup.schemas import (
    ActionIn,
    ActionOut,
    CampaignIn,
    CampaignOut,
    ConfirmAllIn,
    ConfirmIn,
    CorrectIn,
    ItemList,
    ItemOut,
    RetireIn,
    UnitProgress,
)
from vmportal.identity.deps import CurrentActor, CurrentWho, require
from vmportal.kit.http import SessionDep
from vmportal.kit.scope import CENTER
from vmportal.paperwork.api import _uploads

router = APIRouter(tags=["cleanup"])
_MAX_ID = 2**31 - 1


def campaign_out(session: Session, actor: Actor, campaign: CleanupCampaign) -> CampaignOut:
    assert campaign.id is not None
    rows = service.progress(session, actor, campaign.id)
    return CampaignOut(
        id=campaign.id,
        name=campaign.name,
        state=CampaignState(campaign.state),
        deadline_at=campaign.deadline_at,
        grace_days=campaign.grace_days,
        grace_ends_at=service.grace_ends_at(campaign),
        opened_at=campaign.opened_at,
        deadline_processed_at=campaign.deadline_processed_at,
        closed_at=campaign.closed_at,
        total=sum(r.total for r in rows),
        pending=sum(r.counts[ItemStatus.PENDING] for r in rows),
        units_complete=sum(1 for r in rows if r.complete),
        units=[
            UnitProgress(
                unit_id=r.unit.id or 0,
                unit_code=r.unit.code,
                unit_name=r.unit.name_zh,
                total=r.total,
                pending=r.counts[ItemStatus.PENDING],
                confirmed=r.counts[ItemStatus.CONFIRMED],
                corrected=r.counts[ItemStatus.CORRECTED],
                retired=r.counts[ItemStatus.RETIRED],
                complete=r.complete,
            )
            for r in rows
        ],
    )


def item_out(session: Session, item: CleanupItem) -> ItemOut:
    assert item.id is not None
    return ItemOut(
        id=item.id,
        campaign_id=item.campaign_id,
        unit_id=item.unit_id,
        kind=ItemKind(item.kind),
        target_id=item.target_id,
        domain=item.domain,
        label=item.label,
        status=ItemStatus(item.status),
        decided_at=item.decided_at,
        decided_by=item.decided_by,
        via=item.via,
        note=item.note,
        changes=item.changes,
        action=ItemAction(item.action),
        action_at=item.action_at,
        current=service.current_of(session, item),
    )


@router.post(
    "/cleanup/campaigns",
    response_model=CampaignOut,
    status_code=201,
    dependencies=[require(*CENTER)],
    summary="Open a clean-up campaign: every unit's VMs, systems and domains to confirm by the deadline",
)
def open_campaign(body: CampaignIn, session: SessionDep, actor: CurrentActor, who: CurrentWho) -> CampaignOut:
    campaign = service.open_campaign(
        session, actor, who, name=body.name, deadline_at=body.deadline_at, grace_days=body.grace_days
    )
    return campaign_out(session, actor, campaign)


@router.get(
    "/cleanup/campaigns", response_model=list[CampaignOut], summary="Clean-up campaigns, the latest first"
)
def list_campaigns(session: SessionDep, actor: CurrentActor) -> list[CampaignOut]:
    return [campaign_out(session, actor, c) for c in service.list_campaigns(session)]


@router.get(
    "/cleanup/campaigns/{campaign_id}",
    response_model=CampaignOut,
    summary="A campaign and its progress per unit (a unit's users: their own unit)",
)
def get_campaign(campaign_id: int, session: SessionDep, actor: CurrentActor) -> CampaignOut:
    return campaign_out(session, actor, service.get_campaign(session, campaign_id))


@router.post(
    "/cleanup/campaigns/{campaign_id}/close",
    response_model=CampaignOut,
    dependencies=[require(*CENTER)],
    summary="Close a campaign (before its deadline: call it off)",
)
def close_campaign(
    campaign_id: int, session: SessionDep, actor: CurrentActor, who: CurrentWho
) -> CampaignOut:
    return campaign_out(session, actor, service.close_campaign(session, actor, who, campaign_id))


@router.get(
    "/cleanup/campaigns/{campaign_id}/items",
    response_model=ItemList,
    summary="A campaign's items (a unit's users: their own unit's)",
)
def list_items(
    campaign_id: int,
    session: SessionDep,
    actor: CurrentActor,
    unit_id: Annotated[int | None, Query(ge=1, le=_MAX_ID)] = None,
    kind: ItemKind | None = None,
    status: ItemStatus | None = None,
) -> ItemList:
    items = service.list_items(session, actor, campaign_id, unit_id=unit_id, kind=kind, status=status)
    return ItemList(items=[item_out(session, i) for i in items], total=len(items))


@router.get(
    "/cleanup/campaigns/{campaign_id}/unconfirmed",
    response_model=ItemList,
    summary="The items not confirmed (after the deadline: the center's clean-up list)",
)
def unconfirmed(campaign_id: int, session: SessionDep, actor: CurrentActor) -> ItemList:
    items = service.unconfirmed(session, actor, campaign_id)
    return ItemList(items=[item_out(session, i) for i in items], total=len(items))


@router.post(
    "/cleanup/campaigns/{campaign_id}/confirm-all",
    response_model=ItemList,
    summary="Confirm every pending item of a unit (a unit's users: their own; the center names unit_id)",
)
def confirm_all(
    campaign_id: int, body: ConfirmAllIn, session: SessionDep, actor: CurrentActor, who: CurrentWho
) -> ItemList:
    items = service.confirm_all(session, actor, who, campaign_id, unit_id=body.unit_id, note=body.note)
    return ItemList(items=[item_out(session, i) for i in items], total=len(items))


@router.post(
    "/cleanup/campaigns/{campaign_id}/register",
    summary="Answer by the filled 附件4 file (multipart 'files'): the systems it lists are confirmed, "
    "corrected or retired; a dry run unless commit=true",
)
async def register_upload(
    campaign_id: int,
    request: Request,
    session: SessionDep,
    actor: CurrentActor,
    who: CurrentWho,
    commit: bool = False,
) -> dict[str, Any]:
    uploads = await _uploads(request)
    return await run_in_threadpool(
        service.register_upload, session, actor, who, campaign_id, uploads, commit=commit
    )


@router.post(
    "/cleanup/campaigns/{campaign_id}/power-off",
    response_model=ActionOut,
    dependencies=[require(*CENTER)],
    summary="After the grace period: power off the unconfirmed VMs (all, or item_ids)",
)
def power_off(
    campaign_id: int, body: ActionIn, session: SessionDep, actor: CurrentActor, who: CurrentWho
) -> ActionOut:
    items = service.power_off(session, actor, who, campaign_id, item_ids=body.item_ids, reason=body.reason)
    return ActionOut(
        campaign_id=campaign_id, action=ItemAction.POWERED_OFF, items=[item_out(session, i) for i in items]
    )


@router.post(
    "/cleanup/campaigns/{campaign_id}/decommission",
    response_model=ActionOut,
    dependencies=[require(*CENTER)],
    summary="Decommission the VMs powered off as unconfirmed and those retired (all, or item_ids)",
)
def decommission(
    campaign_id: int, body: ActionIn, session: SessionDep, actor: CurrentActor, who: CurrentWho
) -> ActionOut:
    items = service.decommission(session, actor, who, campaign_id, item_ids=body.item_ids, reason=body.reason)
    return ActionOut(
        campaign_id=campaign_id, action=ItemAction.DECOMMISSIONED, items=[item_out(session, i) for i in items]
    )


@router.get("/cleanup/items/{item_id}", response_model=ItemOut, summary="One item (another unit's: 404)")
def get_item(item_id: int, session: SessionDep, actor: CurrentActor) -> ItemOut:
    return item_out(session, service.get_item(session, actor, item_id))


@router.post(
    "/cleanup/items/{item_id}/confirm", response_model=ItemOut, summary="Still in use, as registered"
)
def confirm(
    item_id: int, body: ConfirmIn, session: SessionDep, actor: CurrentActor, who: CurrentWho
) -> ItemOut:
    return item_out(session, service.confirm(session, actor, who, item_id, note=body.note))


@router.post(
    "/cleanup/items/{item_id}/correct",
    response_model=ItemOut,
    summary="Still in use, corrected (a VM: system_id; a system: its fields; a domain: domain)",
)
def correct(
    item_id: int, body: CorrectIn, session: SessionDep, actor: CurrentActor, who: CurrentWho
) -> ItemOut:
    values = body.model_dump(exclude_unset=True, exclude={"note"})
    return item_out(session, service.correct(session, actor, who, item_id, values, note=body.note))


@router.post(
    "/cleanup/items/{item_id}/retire",
    response_model=ItemOut,
    summary="No longer needed (a domain or system is removed; a VM is handed back for decommissioning)",
)
def retire(
    item_id: int, body: RetireIn, session: SessionDep, actor: CurrentActor, who: CurrentWho
) -> ItemOut:
    return item_out(session, service.retire(session, actor, who, item_id, reason=body.reason))
