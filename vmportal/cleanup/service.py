"""The annual clean-up (plan 二(二)1, 开展网站域名、虚拟机清理工作) as use cases.

The center opens a campaign with a deadline; at that moment every active unit's VMs, information
systems and their domains become items of the campaign, each ``pending``. A unit's users (its
security administrator and lead) answer each item: **confirm** (still in use, as registered),
**correct** (still in use; the correction is applied to the record: a VM's system, a system's
registration fields, a domain's name) or **retire** (no longer needed: a system or domain is removed,
a VM is handed back to the center to decommission). Uploading the 附件4 file through the campaign
answers every system the file lists (:func:`register_upload`). Reminders before the deadline and the
deadline step are :mod:`vmportal.cleanup.tasks`. After the deadline the center sees the unconfirmed
items, may power the unconfirmed VMs off once the grace period has passed, and then decommission
them (and the retired ones), which frees their addresses and quota. Every change is audited.

Scoping: a unit's users see and answer their own unit's items only (another unit's item answers 404);
the center (admin, operator) opens, steps and closes campaigns and may answer for a unit (the unit
sent its paper); the auditor reads everything and changes nothing.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from hypervisors.base import PowerAction
from policies.roles import Actor, Role, is_center
from vmportal.audit.service import Who, record
from vmportal.cleanup import repository
from vmportal.cleanup.models import (
    CampaignState,
    CleanupCampaign,
    CleanupItem,
    CleanupReminder,
    ItemAction,
    ItemKind,
    ItemStatus,
    ReminderKind,
)
from vmportal.kit import db, errors, pages
from vmportal.kit.scope import can_see_unit, ensure_visible
from vmportal.mail.service import MailEvent, beijing, notify
from vmportal.paperwork import service as paperwork
from vmportal.paperwork import sheets
from vmportal.paperwork.facts import name_key
from vmportal.unit import service as units
from vmportal.unit.models import InformationSystem, Unit
from vmportal.vm import service as vm_service
from vmportal.vm.models import VM, Lifecycle

log = logging.getLogger(__name__)

#: How far ahead a deadline may be set (a campaign is annual).
MAX_AHEAD = timedelta(days=366)
#: The reminders before the deadline: (kind, how long before). Only the most urgent owed is sent.
REMINDERS: tuple[tuple[ReminderKind, timedelta], ...] = (
    (ReminderKind.DAY, timedelta(hours=24)),
    (ReminderKind.WEEK, timedelta(days=7)),
)
_ANSWERED = (ItemStatus.CONFIRMED, ItemStatus.CORRECTED, ItemStatus.RETIRED)
_UNIT_ANSWERERS = (Role.UNIT_ADMIN, Role.UNIT_LEAD)
_KIND_ZH = {ItemKind.VM: "虚拟机", ItemKind.SYSTEM: "信息系统", ItemKind.DOMAIN: "域名"}
_KIND_EN = {ItemKind.VM: "VM", ItemKind.SYSTEM: "information system", ItemKind.DOMAIN: "domain"}
#: The fields a correction may carry, by the item's kind.
CORRECTABLE: dict[ItemKind, tuple[str, ...]] = {
    ItemKind.VM: ("system_id",),
    ItemKind.SYSTEM: ("name", "purpose", "description", "responsible_person", "responsible_phone"),
    ItemKind.DOMAIN: ("domain",),
}


# ---- who may do what ----------------------------------------------------------------------------------


def _ensure_center(actor: Actor, what: str, what_zh: str) -> None:
    if not is_center(actor.role):
        raise errors.Forbidden(
            f"role '{actor.role}' may not {what}: the center's staff only",
            message_zh=f"角色“{actor.role}”无权{what_zh}，仅限信息中心工作人员",
            role=str(actor.role),
        )


def _ensure_may_answer(actor: Actor, unit_id: int) -> None:
    ensure_visible(actor, unit_id, "cleanup item", unit_id)
    if is_center(actor.role) or (actor.role in _UNIT_ANSWERERS and actor.unit_id == unit_id):
        return
    raise errors.Forbidden(
        f"role '{actor.role}' may not answer the clean-up (the unit's admin or lead, or the center)",
        message_zh=f"角色“{actor.role}”无权填报清理确认（限本单位网络安全管理员、负责人或信息中心）",
        role=str(actor.role),
    )


# ---- campaigns --------------------------------------------------------------------------------------


def grace_ends_at(campaign: CleanupCampaign) -> datetime:
    return campaign.deadline_at + timedelta(days=campaign.grace_days)


def campaign_snapshot(c: CleanupCampaign) -> dict[str, Any]:
    return {
        "name": c.name,
        "state": c.state,
        "deadline_at": c.deadline_at.isoformat(),
        "grace_days": c.grace_days,
    }


def get_campaign(session: Session, campaign_id: int) -> CleanupCampaign:
    campaign = repository.get_campaign(session, campaign_id)
    if campaign is None:
        raise errors.NotFound("cleanup campaign", campaign_id)
    return campaign


def list_campaigns(session: Session) -> list[CleanupCampaign]:
    return repository.list_campaigns(session)


def _vm_label(vm: VM) -> str:
    parts = [vm.name]
    if vm.hostname and vm.hostname != vm.name:
        parts.append(vm.hostname)
    if vm.ip_address:
        parts.append(vm.ip_address)
    return " / ".join(parts)[:300]


def open_campaign(
    session: Session,
    actor: Actor,
    who: Who,
    *,
    name: str,
    deadline_at: datetime,
    grace_days: int,
    now: datetime | None = None,
) -> CleanupCampaign:
    """Open a campaign: every active unit's VMs, systems and domains become its pending items, and
    each unit with any is mailed the deadline. One campaign at a time (409 while another is not closed)."""
    _ensure_center(actor, "open a clean-up campaign", "发起清理工作")
    now = now or db.utcnow()
    if deadline_at <= now:
        raise errors.InvalidField(
            "deadline_at",
            "future",
            "the deadline must be in the future",
            message_zh="截止时间必须晚于当前时间",
        )
    if deadline_at > now + MAX_AHEAD:
        raise errors.InvalidField(
            "deadline_at",
            "range",
            "the deadline must be within a year",
            message_zh="截止时间不能晚于一年以后",
        )
    current = repository.active_campaign(session)
    if current is not None:
        raise _one_at_a_time(current)
    campaign = CleanupCampaign(
        name=name, deadline_at=deadline_at, grace_days=grace_days, opened_at=now, opened_by=actor.user_id
    )
    session.add(campaign)
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError:
        # A concurrent opening won the slot between the look-up and the insert.
        raise _one_at_a_time(repository.active_campaign(session)) from None
    assert campaign.id is not None
    per_unit: dict[int, int] = {}
    for unit in repository.active_units(session):
        assert unit.id is not None
        items = _items_for(campaign.id, unit.id, session)
        session.add_all(items)
        if items:
            per_unit[unit.id] = len(items)
    session.flush()
    record(
        session,
        who,
        "cleanup.open",
        "cleanup_campaign",
        campaign.id,
        after={**campaign_snapshot(campaign), "items": sum(per_unit.values()), "units": len(per_unit)},
    )
    for unit_id, count in per_unit.items():
        _mail_opened(session, campaign, unit_id, count)
    return campaign


def _one_at_a_time(current: CleanupCampaign | None) -> errors.Conflict:
    ident = f"#{current.id} {current.name}" if current is not None else ""
    return errors.Conflict(
        f"clean-up campaign {ident} is not closed yet: one campaign at a time",
        message_zh=f"清理工作 {ident} 尚未结束，同一时间只能进行一项清理工作",
        resource="cleanup campaign",
    )


def _items_for(campaign_id: int, unit_id: int, session: Session) -> list[CleanupItem]:
    items: list[CleanupItem] = []
    for vm in repository.unit_vms(session, unit_id):
        assert vm.id is not None
        items.append(
            CleanupItem(
                campaign_id=campaign_id,
                unit_id=unit_id,
                kind=ItemKind.VM,
                target_id=vm.id,
                label=_vm_label(vm),
            )
        )
    for system in repository.systems_of(session, unit_id):
        assert system.id is not None
        items.append(
            CleanupItem(
                campaign_id=campaign_id,
                unit_id=unit_id,
                kind=ItemKind.SYSTEM,
                target_id=system.id,
                label=system.name[:300],
            )
        )
        for domain in dict.fromkeys(system.domains or []):
            items.append(
                CleanupItem(
                    campaign_id=campaign_id,
                    unit_id=unit_id,
                    kind=ItemKind.DOMAIN,
                    target_id=system.id,
                    domain=domain[:253],
                    label=f"{domain}（{system.name}）"[:300],
                )
            )
    return items


def close_campaign(session: Session, actor: Actor, who: Who, campaign_id: int) -> CleanupCampaign:
    """End a campaign (before its deadline: called off, never judged). Nothing changes in it after."""
    _ensure_center(actor, "close a clean-up campaign", "结束清理工作")
    campaign = _locked(session, campaign_id)
    if campaign.state == CampaignState.CLOSED:
        raise errors.StateConflict("cleanup campaign", campaign.state, "close")
    before = campaign_snapshot(campaign)
    campaign.state = CampaignState.CLOSED
    campaign.active_slot = None
    campaign.closed_at = db.utcnow()
    campaign.closed_by = actor.user_id
    session.add(campaign)
    record(
        session,
        who,
        "cleanup.close",
        "cleanup_campaign",
        campaign_id,
        before=before,
        after=campaign_snapshot(campaign),
        detail="called off before its deadline" if campaign.deadline_processed_at is None else "",
    )
    return campaign


def _locked(session: Session, campaign_id: int) -> CleanupCampaign:
    campaign = repository.lock_campaign(session, campaign_id)
    if campaign is None:
        raise errors.NotFound("cleanup campaign", campaign_id)
    return campaign


# ---- progress -----------------------------------------------------------------------------------------


@dataclass
class Progress:
    unit: Unit
    counts: dict[str, int] = field(default_factory=lambda: {s.value: 0 for s in ItemStatus})

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def complete(self) -> bool:
        return self.counts[ItemStatus.PENDING] == 0


def progress(session: Session, actor: Actor, campaign_id: int) -> list[Progress]:
    """Per unit the actor may see that has items in the campaign: how many of each status."""
    only = None if can_see_unit(actor, None) else (actor.unit_id if actor.unit_id is not None else -1)
    by_unit: dict[int, Progress] = {}
    names = {u.id: u for u in units.list_units(session)}
    for unit_id, _kind, status, n in repository.counts(session, campaign_id, only):
        unit = names.get(unit_id)
        if unit is None:
            continue
        row = by_unit.setdefault(unit_id, Progress(unit))
        row.counts[status] = row.counts.get(status, 0) + n
    return [by_unit[k] for k in sorted(by_unit)]


# ---- items --------------------------------------------------------------------------------------------


def list_items(
    session: Session,
    actor: Actor,
    campaign_id: int,
    *,
    unit_id: int | None = None,
    kind: ItemKind | None = None,
    status: ItemStatus | None = None,
) -> list[CleanupItem]:
    get_campaign(session, campaign_id)
    if not can_see_unit(actor, None):
        if unit_id is not None and unit_id != actor.unit_id:
            raise errors.NotFound("unit", unit_id)
        unit_id = actor.unit_id if actor.unit_id is not None else -1
    return repository.list_items(
        session,
        campaign_id,
        unit_id=unit_id,
        kinds=[kind.value] if kind else (),
        statuses=[status.value] if status else (),
    )


def get_item(session: Session, actor: Actor, item_id: int) -> CleanupItem:
    item = repository.get_item(session, item_id)
    if item is None or not can_see_unit(actor, item.unit_id):
        raise errors.NotFound("cleanup item", item_id)
    return item


def current_of(session: Session, item: CleanupItem) -> dict[str, Any] | None:
    """The item's VM, system or domain as it is now; None once it is gone."""
    if item.kind == ItemKind.VM:
        vm = repository.get_vm(session, item.target_id)
        if vm is None:
            return None
        return {
            "name": vm.name,
            "hostname": vm.hostname,
            "ip_address": vm.ip_address,
            "system_id": vm.system_id,
            "power_state": vm.power_state,
            "lifecycle": vm.lifecycle,
        }
    system = repository.get_system(session, item.target_id)
    if system is None or system.unit_id != item.unit_id:
        return None
    if item.kind == ItemKind.DOMAIN:
        return (
            {"domain": item.domain, "system_id": system.id, "system_name": system.name}
            if (item.domain in (system.domains or []))
            else None
        )
    return {"id": system.id, **units.system_snapshot(system)}


def item_snapshot(item: CleanupItem) -> dict[str, Any]:
    return {"status": item.status, "action": item.action, "note": item.note, "label": item.label}


def _answerable(
    session: Session, actor: Actor, item_id: int, verb: str
) -> tuple[CleanupItem, CleanupCampaign]:
    item = repository.lock_item(session, item_id)
    if item is None or not can_see_unit(actor, item.unit_id):
        raise errors.NotFound("cleanup item", item_id)
    _ensure_may_answer(actor, item.unit_id)
    campaign = get_campaign(session, item.campaign_id)
    if campaign.state == CampaignState.CLOSED:
        raise errors.StateConflict(
            "cleanup campaign",
            campaign.state,
            verb,
            message=f"clean-up campaign {campaign.id} is closed: its items can no longer be answered",
        )
    if item.status == ItemStatus.RETIRED or item.action == ItemAction.DECOMMISSIONED:
        state = ItemAction.DECOMMISSIONED.value if item.action == ItemAction.DECOMMISSIONED else item.status
        raise errors.StateConflict(
            "cleanup item",
            state,
            verb,
            message=f"cleanup item {item_id} is {state}: its answer is final",
        )
    return item, campaign


def _decide(
    session: Session,
    who: Who,
    actor: Actor,
    item: CleanupItem,
    status: ItemStatus,
    *,
    note: str,
    via: str,
    changes: dict[str, Any] | None = None,
) -> CleanupItem:
    before = item_snapshot(item)
    late = False
    campaign = repository.get_campaign(session, item.campaign_id)
    now = db.utcnow()
    if campaign is not None and now > campaign.deadline_at:
        late = True
    item.status = status
    item.decided_at = now
    item.decided_by = actor.user_id
    item.via = via[:20]
    item.note = note[:500]
    item.changes = changes
    session.add(item)
    record(
        session,
        who,
        f"cleanup.{status.value if status != ItemStatus.CONFIRMED else 'confirm'}",
        "cleanup_item",
        item.id,
        before=before,
        after={**item_snapshot(item), "changes": changes, "via": item.via, "late": late},
        detail=note,
        unit_id=item.unit_id,
    )
    return item


def confirm(
    session: Session, actor: Actor, who: Who, item_id: int, *, note: str = "", via: str = "api"
) -> CleanupItem:
    """The item is still in use, as registered."""
    item, _ = _answerable(session, actor, item_id, "confirm")
    if current_of(session, item) is None:
        raise errors.StateConflict(
            "cleanup item",
            "missing",
            "confirm",
            message=f"cleanup item {item_id}: the {item.kind} no longer exists; retire the item instead",
        )
    return _decide(session, who, actor, item, ItemStatus.CONFIRMED, note=note, via=via)


def correct(
    session: Session,
    actor: Actor,
    who: Who,
    item_id: int,
    values: dict[str, Any],
    *,
    note: str = "",
    via: str = "api",
) -> CleanupItem:
    """Still in use, with corrections applied to the record itself (and audited there as well)."""
    item, _ = _answerable(session, actor, item_id, "correct")
    kind = ItemKind(item.kind)
    allowed = CORRECTABLE[kind]
    given = {k: v for k, v in values.items() if v is not None}
    for name in given:
        if name not in allowed:
            raise errors.InvalidField(
                name,
                "kind",
                f"a {_KIND_EN[kind]} item cannot correct '{name}' (it may correct: {', '.join(allowed)})",
                message_zh=f"{_KIND_ZH[kind]}类清理项目不能修改此项（可修改：{'、'.join(allowed)}）",
            )
    if not given:
        raise errors.InvalidField(
            allowed[0],
            "required",
            f"a correction names at least one of: {', '.join(allowed)}",
            message_zh="更正时至少填写一项要修改的内容",
        )
    if kind == ItemKind.VM:
        changes = _correct_vm(session, who, item, int(given["system_id"]))
    elif kind == ItemKind.SYSTEM:
        changes = _correct_system(session, who, item, given)
    else:
        changes = _correct_domain(session, who, item, str(given["domain"]))
    return _decide(session, who, actor, item, ItemStatus.CORRECTED, note=note, via=via, changes=changes)


def _vm_of(session: Session, item: CleanupItem, verb: str) -> VM:
    vm = repository.get_vm(session, item.target_id)
    if vm is None or vm.unit_id != item.unit_id or vm.lifecycle != Lifecycle.ACTIVE:
        raise errors.StateConflict(
            "cleanup item", "missing", verb, message=f"cleanup item {item.id}: the VM no longer exists"
        )
    return vm


def _system_of(session: Session, item: CleanupItem, verb: str) -> InformationSystem:
    system = repository.get_system(session, item.target_id)
    if system is None or system.unit_id != item.unit_id:
        raise errors.StateConflict(
            "cleanup item", "missing", verb, message=f"cleanup item {item.id}: the system no longer exists"
        )
    return system


def _correct_vm(session: Session, who: Who, item: CleanupItem, system_id: int) -> dict[str, Any]:
    vm = _vm_of(session, item, "correct")
    system = repository.get_system(session, system_id)
    if system is None or system.unit_id != item.unit_id:
        raise errors.InvalidField(
            "system_id",
            "belongs_to_unit",
            f"information system {system_id} is not a system of the VM's unit",
            message_zh="该信息系统不属于本单位",
        )
    before = {"system_id": vm.system_id}
    vm.system_id = system_id
    session.add(vm)
    record(
        session,
        who,
        "vm.system",
        "vm",
        vm.id,
        before=before,
        after={"system_id": system_id},
        unit_id=vm.unit_id,
    )
    return {"system_id": {"before": before["system_id"], "after": system_id}}


def _correct_system(session: Session, who: Who, item: CleanupItem, given: dict[str, Any]) -> dict[str, Any]:
    system = _system_of(session, item, "correct")
    before = units.system_snapshot(system)
    units.update_system(session, who, system, given)
    after = units.system_snapshot(system)
    if after.get("name") != before.get("name"):
        item.label = str(after["name"])[:300]
    return {k: {"before": before[k], "after": after[k]} for k in given if before.get(k) != after.get(k)}


def _correct_domain(session: Session, who: Who, item: CleanupItem, domain: str) -> dict[str, Any]:
    system = _system_of(session, item, "correct")
    domains = list(system.domains or [])
    if item.domain not in domains:
        raise errors.StateConflict(
            "cleanup item",
            "missing",
            "correct",
            message=f"cleanup item {item.id}: the domain is no longer registered",
        )
    if domain != item.domain and domain in domains:
        raise errors.InvalidField(
            "domain",
            "unique",
            f"{domain} is registered for this system already",
            message_zh=f"{domain} 已登记在该信息系统下",
        )
    old = item.domain
    units.update_system(session, who, system, {"domains": [domain if d == old else d for d in domains]})
    item.domain = domain
    item.label = f"{domain}（{system.name}）"[:300]
    return {"domain": {"before": old, "after": domain}}


def retire(
    session: Session, actor: Actor, who: Who, item_id: int, *, reason: str, via: str = "api"
) -> CleanupItem:
    """No longer needed. A domain is removed from its system, a system deleted (refused while VMs or
    requests name it), a VM handed back: the center decommissions it (:func:`decommission`)."""
    item, campaign = _answerable(session, actor, item_id, "retire")
    kind = ItemKind(item.kind)
    if kind == ItemKind.DOMAIN:
        system = _system_of(session, item, "retire")
        units.update_system(
            session, who, system, {"domains": [d for d in system.domains or [] if d != item.domain]}
        )
    elif kind == ItemKind.SYSTEM:
        system = _system_of(session, item, "retire")
        units.delete_system(session, who, system)
        session.flush()
        for other in repository.items_of_target(session, campaign.id or 0, ItemKind.DOMAIN, item.target_id):
            if other.status != ItemStatus.RETIRED:
                _decide(session, who, actor, other, ItemStatus.RETIRED, note=reason, via=via)
    else:
        _vm_of(session, item, "retire")
    return _decide(session, who, actor, item, ItemStatus.RETIRED, note=reason, via=via)


def confirm_all(
    session: Session,
    actor: Actor,
    who: Who,
    campaign_id: int,
    *,
    unit_id: int | None,
    note: str = "",
    via: str = "api",
) -> list[CleanupItem]:
    """Confirm every pending item of one unit (a unit's users: their own; the center names the unit)."""
    if not is_center(actor.role) and actor.role not in _UNIT_ANSWERERS:
        _ensure_center(actor, "answer the clean-up", "填报清理确认")
    if is_center(actor.role) and unit_id is None:
        raise errors.InvalidField(
            "unit_id",
            "required",
            "the center names the unit whose items it confirms",
            message_zh="请指定单位",
        )
    if not is_center(actor.role):
        if unit_id is not None and unit_id != actor.unit_id:
            raise errors.NotFound("unit", unit_id)  # another unit's: as if it did not exist
        unit_id = actor.unit_id
    if unit_id is None:
        raise errors.NotFound("unit", "none")
    _ensure_may_answer(actor, unit_id)
    get_campaign(session, campaign_id)
    done: list[CleanupItem] = []
    for pending in repository.list_items(
        session, campaign_id, unit_id=unit_id, statuses=[ItemStatus.PENDING]
    ):
        assert pending.id is not None
        item, _ = _answerable(session, actor, pending.id, "confirm")
        if current_of(session, item) is None:
            continue  # gone meanwhile: left for the unit to retire
        done.append(_decide(session, who, actor, item, ItemStatus.CONFIRMED, note=note, via=via))
    return done


# ---- the 附件4 file as the unit's answer --------------------------------------------------------------


def register_upload(
    session: Session,
    actor: Actor,
    who: Who,
    campaign_id: int,
    uploads: list[paperwork.Upload],
    *,
    commit: bool,
) -> dict[str, Any]:
    """A filled 附件4 file uploaded during a campaign: the paperwork import (same dry run, same
    all-or-nothing commit), and then every system the file lists answers its item: unchanged rows
    confirm, changed rows correct, rows marked 保留=否 retire (with their domains). The domains listed
    under a kept system confirm; a domain left out of its row is retired by the import itself."""
    if is_center(actor.role):
        only: int | None = None
    elif actor.role in _UNIT_ANSWERERS:
        only = actor.unit_id if actor.unit_id is not None else -1
    else:
        _ensure_center(actor, "answer the clean-up", "填报清理确认")
        only = None
    campaign = get_campaign(session, campaign_id)
    if campaign.state == CampaignState.CLOSED:
        raise errors.StateConflict("cleanup campaign", campaign.state, "confirm")
    # What each file says about each system, read before the import changes them.
    planned: list[dict[str, Any]] = []
    answers: list[tuple[CleanupItem, ItemStatus]] = []
    unit_by_code = {u.code: u.id for u in units.list_units(session)}
    for upload in uploads:
        try:
            sheet = sheets.read_systems(upload.content, filename=upload.filename)
        except sheets.NotXlsx:
            continue  # the import names it
        unit_id = unit_by_code.get(sheet.unit_code)
        if unit_id is None or (only is not None and unit_id != only):
            continue  # the import names it
        systems = {s.id: s for s in repository.systems_of(session, unit_id)}
        by_name = {name_key(s.name): s for s in systems.values()}
        for row, key, keep, values in sheet.rows:
            system = systems.get(key) if key is not None else by_name.get(name_key(values["name"]))
            if system is None or system.id is None:
                planned.append({"file": upload.filename, "row": row, "system_id": None, "answer": "new"})
                continue
            answer = _register_answer(system, values, keep)
            for item in repository.items_of_target(session, campaign_id, ItemKind.SYSTEM, system.id):
                if item.unit_id != unit_id or item.status == ItemStatus.RETIRED:
                    continue
                planned.append(
                    {
                        "file": upload.filename,
                        "row": row,
                        "system_id": system.id,
                        "item_id": item.id,
                        "answer": answer.value,
                    }
                )
                answers.append((item, answer))
    report = paperwork.import_systems(session, who, uploads, only_unit=only, commit=commit)
    if commit:
        session.flush()
        for item, answer in answers:
            _apply_register_answer(session, actor, who, campaign_id, item, answer)
    report["cleanup"] = {"campaign_id": campaign_id, "items": planned}
    return report


def _register_answer(system: InformationSystem, values: dict[str, Any], keep: bool) -> ItemStatus:
    if not keep:
        return ItemStatus.RETIRED
    now = units.system_snapshot(system)
    for name, current in now.items():
        given = values.get(name)
        if name == "domains":
            given = list(dict.fromkeys(given or []))
        elif given is None:
            given = ""
        else:
            given = str(given)
        if given != current:
            return ItemStatus.CORRECTED
    return ItemStatus.CONFIRMED


def _apply_register_answer(
    session: Session, actor: Actor, who: Who, campaign_id: int, item: CleanupItem, status: ItemStatus
) -> None:
    changes = {"via": "附件4"} if status == ItemStatus.CORRECTED else None
    _decide(
        session, who, actor, item, status, note="信息系统登记表（附件4）", via="register", changes=changes
    )
    system = repository.get_system(session, item.target_id)
    kept = set(system.domains or []) if system is not None else set()
    for domain_item in repository.items_of_target(session, campaign_id, ItemKind.DOMAIN, item.target_id):
        if domain_item.status == ItemStatus.RETIRED:
            continue
        domain_status = ItemStatus.CONFIRMED if domain_item.domain in kept else ItemStatus.RETIRED
        if domain_item.status != ItemStatus.PENDING and domain_status == ItemStatus.CONFIRMED:
            continue  # answered before, still registered: the earlier answer stands
        _decide(
            session, who, actor, domain_item, domain_status, note="信息系统登记表（附件4）", via="register"
        )


# ---- after the deadline: the center's steps --------------------------------------------------------------


def unconfirmed(session: Session, actor: Actor, campaign_id: int) -> list[CleanupItem]:
    """The items still pending (after the deadline: the unconfirmed), for the center."""
    get_campaign(session, campaign_id)
    unit_id = None if can_see_unit(actor, None) else (actor.unit_id or -1)
    return repository.list_items(session, campaign_id, unit_id=unit_id, statuses=[ItemStatus.PENDING])


def _after_deadline(campaign: CleanupCampaign, action: str) -> None:
    if campaign.state != CampaignState.DEADLINE_PASSED:
        raise errors.StateConflict(
            "cleanup campaign",
            campaign.state,
            action,
            message=(
                f"clean-up campaign {campaign.id} is {campaign.state}: its VMs can be {action} only after "
                "the deadline step and before the campaign is closed"
            ),
        )


def _chosen(
    session: Session,
    campaign_id: int,
    item_ids: list[int] | None,
    qualifies: Any,
    rule: str,
    what: str,
    what_zh: str,
) -> list[CleanupItem]:
    candidates = [i for i in repository.list_items(session, campaign_id, kinds=[ItemKind.VM]) if qualifies(i)]
    if item_ids is None:
        return candidates
    by_id = {i.id: i for i in candidates}
    wrong = [n for n in dict.fromkeys(item_ids) if n not in by_id]
    if wrong:
        raise errors.InvalidField(
            "item_ids",
            rule,
            f"not {what} of campaign {campaign_id}: {', '.join(map(str, wrong[:20]))}",
            message_zh=f"以下项目不是本次清理中{what_zh}：{'、'.join(map(str, wrong[:20]))}",
        )
    return [by_id[n] for n in dict.fromkeys(item_ids)]


def power_off(
    session: Session,
    actor: Actor,
    who: Who,
    campaign_id: int,
    *,
    item_ids: list[int] | None,
    reason: str,
    now: datetime | None = None,
) -> list[CleanupItem]:
    """Power off the unconfirmed VMs (all, or those named), once the grace period after the deadline
    has passed. A unit that confirms afterwards may start its VM again."""
    _ensure_center(actor, "power off unconfirmed VMs", "关闭未确认的虚拟机")
    now = now or db.utcnow()
    campaign = _locked(session, campaign_id)
    _after_deadline(campaign, "power_off")
    ends = grace_ends_at(campaign)
    if now < ends:
        raise errors.Conflict(
            f"the grace period of campaign {campaign_id} ends {beijing(ends)} Beijing time: "
            "unconfirmed VMs may be powered off only after it",
            message_zh=f"本次清理的宽限期至 {beijing(ends)}（北京时间）结束，"
            "宽限期结束后才能关闭未确认的虚拟机",
            grace_ends_at=ends.isoformat(),
        )
    chosen = _chosen(
        session,
        campaign_id,
        item_ids,
        lambda i: i.status == ItemStatus.PENDING and i.action == ItemAction.NONE,
        "unconfirmed_vm",
        "an unconfirmed VM not yet powered off",
        "尚未关机的未确认虚拟机",
    )
    by_unit: dict[int, list[CleanupItem]] = defaultdict(list)
    for item in chosen:
        vm = repository.get_vm(session, item.target_id)
        if vm is not None and vm.lifecycle == Lifecycle.ACTIVE and vm.id is not None:
            vm_service.enqueue_power(
                session,
                vm.id,
                PowerAction.STOP,
                who=who,
                reason=f"清理工作 #{campaign_id} 截止后未确认 / unconfirmed in clean-up campaign "
                f"{campaign_id}: {reason}",
                requested_by=actor.user_id,
            )
        _act(session, who, item, ItemAction.POWERED_OFF, reason)
        by_unit[item.unit_id].append(item)
    for unit_id, items in by_unit.items():
        _mail_action(session, campaign, unit_id, items, ItemAction.POWERED_OFF, reason)
    return chosen


def decommission(
    session: Session, actor: Actor, who: Who, campaign_id: int, *, item_ids: list[int] | None, reason: str
) -> list[CleanupItem]:
    """Decommission the VMs powered off as unconfirmed (and still unconfirmed) and those their unit
    retired: deleted on the hypervisor, their addresses released, their quota freed."""
    _ensure_center(actor, "decommission VMs", "回收虚拟机")
    campaign = _locked(session, campaign_id)
    _after_deadline(campaign, "decommission")
    chosen = _chosen(
        session,
        campaign_id,
        item_ids,
        lambda i: (
            i.action != ItemAction.DECOMMISSIONED
            and (
                (i.status == ItemStatus.PENDING and i.action == ItemAction.POWERED_OFF)
                or i.status == ItemStatus.RETIRED
            )
        ),
        "decommissionable",
        "a VM powered off as unconfirmed, or retired by its unit,",
        "已因未确认而关机或单位申请停用的虚拟机",
    )
    by_unit: dict[int, list[CleanupItem]] = defaultdict(list)
    for item in chosen:
        vm = repository.get_vm(session, item.target_id)
        if vm is not None and not (
            vm.lifecycle == Lifecycle.DECOMMISSIONED and vm.decommissioned_at is not None
        ):
            vm_service.request_decommission(
                session, actor, who, item.target_id, f"清理工作 #{campaign_id}: {reason}"
            )
        _act(session, who, item, ItemAction.DECOMMISSIONED, reason)
        by_unit[item.unit_id].append(item)
    for unit_id, items in by_unit.items():
        _mail_action(session, campaign, unit_id, items, ItemAction.DECOMMISSIONED, reason)
    return chosen


def _act(session: Session, who: Who, item: CleanupItem, action: ItemAction, reason: str) -> None:
    before = item_snapshot(item)
    item.action = action
    item.action_at = db.utcnow()
    session.add(item)
    record(
        session,
        who,
        f"cleanup.{action.value}",
        "cleanup_item",
        item.id,
        before=before,
        after=item_snapshot(item),
        detail=reason,
        unit_id=item.unit_id,
    )


# ---- the deadline step and the reminders (called by vmportal.cleanup.tasks) ------------------------


def reminder_owed(campaign: CleanupCampaign, now: datetime) -> ReminderKind | None:
    """The most urgent reminder owed at ``now`` before the deadline (None: none yet, or past it)."""
    if campaign.state != CampaignState.OPEN or now >= campaign.deadline_at:
        return None
    left = campaign.deadline_at - now
    for kind, ahead in REMINDERS:
        if left <= ahead:
            return kind
    return None


def remind_unit(session: Session, campaign_id: int, unit_id: int, now: datetime) -> ReminderKind | None:
    """Queue the reminder a unit with pending items is owed, once per kind (a unit first reminded on
    the last day gets the last day's reminder only). The caller's transaction; a concurrent run's
    row makes the flush fail before any mail is composed."""
    campaign = repository.get_campaign(session, campaign_id)
    if campaign is None:
        return None
    kind = reminder_owed(campaign, now)
    if kind is None or repository.reminded(session, campaign_id, unit_id, kind.value):
        return None
    pending = repository.list_items(session, campaign_id, unit_id=unit_id, statuses=[ItemStatus.PENDING])
    if not pending:
        return None
    session.add(CleanupReminder(campaign_id=campaign_id, unit_id=unit_id, kind=kind.value, queued_at=now))
    session.flush()
    _mail_reminder(session, campaign, unit_id, pending, kind, now)
    return kind


def pass_deadline(session: Session, campaign_id: int, now: datetime) -> dict[str, int] | None:
    """The deadline step: the campaign's pending items become the unconfirmed, listed for the center
    (one mail) and for each unit that has any (one mail each); audited. Once: under the campaign's
    row lock, an open campaign only (None when there is nothing to do)."""
    campaign = repository.lock_campaign(session, campaign_id)
    if campaign is None or campaign.state != CampaignState.OPEN or campaign.deadline_at > now:
        return None
    before = campaign_snapshot(campaign)
    campaign.state = CampaignState.DEADLINE_PASSED
    campaign.deadline_processed_at = now
    session.add(campaign)
    pending = repository.list_items(session, campaign_id, statuses=[ItemStatus.PENDING])
    by_unit: dict[int, list[CleanupItem]] = defaultdict(list)
    for item in pending:
        by_unit[item.unit_id].append(item)
    record(
        session,
        Who.system("cleanup"),
        "cleanup.deadline",
        "cleanup_campaign",
        campaign_id,
        before=before,
        after={**campaign_snapshot(campaign), "unconfirmed": len(pending), "units_unconfirmed": len(by_unit)},
    )
    for unit_id, items in by_unit.items():
        session.add(
            CleanupReminder(
                campaign_id=campaign_id, unit_id=unit_id, kind=ReminderKind.DEADLINE, queued_at=now
            )
        )
        _mail_unit_deadline(session, campaign, unit_id, items)
    _mail_center_deadline(session, campaign, by_unit)
    return {"unconfirmed": len(pending), "units": len(by_unit)}


# ---- the compliance report's reading ----------------------------------------------------------------------


@dataclass(frozen=True)
class Standing:
    """A unit in the latest judged campaign (its deadline step has run)."""

    campaign_id: int
    campaign_name: str
    deadline_at: datetime
    items: int
    pending: int
    confirmed_on_time: bool  # every item answered by the deadline

    @property
    def confirmed(self) -> bool:
        return self.pending == 0


def standings(session: Session) -> dict[int, Standing]:
    """Per unit that had items in the latest judged campaign: whether it confirmed them (now, and by
    the deadline). A unit absent from the map had nothing to confirm, or no campaign was judged yet."""
    campaign = repository.latest_judged(session)
    if campaign is None or campaign.id is None:
        return {}
    items: dict[int, list[CleanupItem]] = defaultdict(list)
    for item in repository.list_items(session, campaign.id):
        items[item.unit_id].append(item)
    out: dict[int, Standing] = {}
    for unit_id, rows in items.items():
        pending = sum(1 for i in rows if i.status == ItemStatus.PENDING)
        on_time = all(i.decided_at is not None and i.decided_at <= campaign.deadline_at for i in rows)
        out[unit_id] = Standing(campaign.id, campaign.name, campaign.deadline_at, len(rows), pending, on_time)
    return out


# ---- mails ----------------------------------------------------------------------------------------------


def _unit_names(session: Session, unit_id: int) -> tuple[str, str]:
    try:
        unit = units.get_unit(session, unit_id)
    except errors.NotFound:
        return f"单位 {unit_id}", f"unit {unit_id}"
    return unit.name_zh, unit.name_en or unit.name_zh


def _lines(items: list[CleanupItem], *, english: bool) -> str:
    names = _KIND_EN if english else _KIND_ZH
    shown = [
        f"- {names[ItemKind(i.kind)]}: {i.label}" if english else f"- {names[ItemKind(i.kind)]}：{i.label}"
        for i in items[:50]
    ]
    if len(items) > 50:
        shown.append(f"- … and {len(items) - 50} more" if english else f"- ……另有 {len(items) - 50} 项")
    return "\n".join(shown)


def _mail_opened(session: Session, campaign: CleanupCampaign, unit_id: int, count: int) -> None:
    zh, en = _unit_names(session, unit_id)
    due = beijing(campaign.deadline_at)
    notify(
        session,
        MailEvent.CLEANUP_OPENED,
        unit_id,
        subject_zh=f"{campaign.name}：请于 {due} 前确认本单位的虚拟机、信息系统和域名",
        subject_en=f"{campaign.name}: confirm your unit's VMs, information systems and domains by {due}",
        body_zh=(
            f"{zh}：\n\n信息中心开展网站域名、虚拟机清理工作（{campaign.name}）。"
            f"请登录平台，对本单位的 {count} 项"
            f"虚拟机、信息系统和域名逐项确认、更正或申请停用（也可下载并上传《信息系统登记表》（附件4））。"
            f"网站安全责任人如有变更，请一并更新。\n\n截止时间：{due}（北京时间）\n"
            f"截止后仍未确认的虚拟机，信息中心可在宽限期（{campaign.grace_days} 天）结束后关机并回收。"
        ),
        body_en=(
            f"{en}:\n\nThe center runs the annual clean-up of websites' domains and VMs "
            f"({campaign.name}). Please "
            f"confirm, correct or retire each of your unit's {count} VMs, information systems and "
            "domains in the "
            "portal (or download and upload the information-system registration form, 附件4), and update the "
            f"person responsible where it changed.\n\nDeadline: {due} (Beijing time)\n"
            f"VMs still unconfirmed after the deadline may be powered off and decommissioned once the grace "
            f"period of {campaign.grace_days} days has passed."
        ),
        related_type="cleanup_campaign",
        related_id=campaign.id,
        link=pages.CLEANUP,
        dedup_key=f"cleanup:{campaign.id}:opened:{unit_id}",
    )


def _mail_reminder(
    session: Session,
    campaign: CleanupCampaign,
    unit_id: int,
    pending: list[CleanupItem],
    kind: ReminderKind,
    now: datetime,
) -> None:
    zh, en = _unit_names(session, unit_id)
    due = beijing(campaign.deadline_at)
    notify(
        session,
        MailEvent.CLEANUP_REMINDER,
        unit_id,
        subject_zh=f"{campaign.name}将于 {due} 截止，本单位尚有 {len(pending)} 项未确认",
        subject_en=f"{campaign.name} ends {due} Beijing time: "
        f"{len(pending)} item(s) of your unit unconfirmed",
        body_zh=(
            f"{zh}：\n\n{campaign.name}将于 {due}（北京时间）截止，本单位以下项目尚未确认：\n\n"
            f"{_lines(pending, english=False)}\n\n请在截止前登录平台逐项确认、更正或申请停用。"
        ),
        body_en=(
            f"{en}:\n\n{campaign.name} ends {due} (Beijing time). These items of your unit are not confirmed "
            f"yet:\n\n{_lines(pending, english=True)}\n\nPlease confirm, correct or retire them "
            "in the portal "
            "before the deadline."
        ),
        related_type="cleanup_campaign",
        related_id=campaign.id,
        link=pages.CLEANUP,
    )


def _mail_unit_deadline(
    session: Session, campaign: CleanupCampaign, unit_id: int, items: list[CleanupItem]
) -> None:
    zh, en = _unit_names(session, unit_id)
    ends = beijing(grace_ends_at(campaign))
    notify(
        session,
        MailEvent.CLEANUP_DEADLINE,
        unit_id,
        subject_zh=f"{campaign.name}已截止，本单位有 {len(items)} 项未确认",
        subject_en=f"{campaign.name} has ended with {len(items)} item(s) of your unit unconfirmed",
        body_zh=(
            f"{zh}：\n\n{campaign.name}已于 {beijing(campaign.deadline_at)}（北京时间）截止，"
            "本单位以下项目未确认，"
            f"已列入信息中心的清理名单：\n\n{_lines(items, english=False)}\n\n宽限期至 {ends}（北京时间）。"
            "宽限期结束后仍未确认的虚拟机，信息中心可关机并回收（删除虚拟机，释放IP地址和配额）。请尽快确认。"
        ),
        body_en=(
            f"{en}:\n\n{campaign.name} ended {beijing(campaign.deadline_at)} (Beijing time). "
            "These items of your "
            "unit were not confirmed and are on the center's clean-up "
            f"list:\n\n{_lines(items, english=True)}\n\n"
            f"The grace period ends {ends} (Beijing time). VMs still unconfirmed then may be powered off and "
            "decommissioned (deleted, their addresses and quota freed). Please confirm them now."
        ),
        related_type="cleanup_campaign",
        related_id=campaign.id,
        link=pages.CLEANUP,
        dedup_key=f"cleanup:{campaign.id}:deadline:{unit_id}",
    )


def _mail_center_deadline(
    session: Session, campaign: CleanupCampaign, by_unit: dict[int, list[CleanupItem]]
) -> None:
    total = sum(len(v) for v in by_unit.values())
    rows_zh, rows_en = [], []
    for unit_id, items in sorted(by_unit.items()):
        zh, en = _unit_names(session, unit_id)
        vms = sum(1 for i in items if i.kind == ItemKind.VM)
        rows_zh.append(f"- {zh}：{len(items)} 项未确认（其中虚拟机 {vms} 台）")
        rows_en.append(f"- {en}: {len(items)} unconfirmed ({vms} VMs)")
    notify(
        session,
        MailEvent.CLEANUP_UNCONFIRMED,
        None,
        subject_zh=f"{campaign.name}已截止：{len(by_unit)} 个单位共 {total} 项未确认",
        subject_en=f"{campaign.name} has ended: {total} item(s) of {len(by_unit)} unit(s) unconfirmed",
        body_zh=(
            f"{campaign.name}已于 {beijing(campaign.deadline_at)}（北京时间）截止。未确认的项目：\n\n"
            f"{chr(10).join(rows_zh) or '（无）'}\n\n"
            f"宽限期至 {beijing(grace_ends_at(campaign))}（北京时间），"
            "之后可在平台上关闭未确认的虚拟机，再予回收。"
        ),
        body_en=(
            f"{campaign.name} ended {beijing(campaign.deadline_at)} (Beijing time). Unconfirmed:\n\n"
            f"{chr(10).join(rows_en) or '(none)'}\n\nThe grace period ends "
            f"{beijing(grace_ends_at(campaign))} "
            "(Beijing time); after it the unconfirmed VMs may be powered off in the portal, then "
            "decommissioned."
        ),
        related_type="cleanup_campaign",
        related_id=campaign.id,
        link=pages.CLEANUP,
        dedup_key=f"cleanup:{campaign.id}:deadline:center",
        center_only=True,
    )


def _mail_action(
    session: Session,
    campaign: CleanupCampaign,
    unit_id: int,
    items: list[CleanupItem],
    action: ItemAction,
    reason: str,
) -> None:
    zh, en = _unit_names(session, unit_id)
    if action == ItemAction.POWERED_OFF:
        verb_zh, verb_en = "已关机", "powered off"
        after_zh = "如仍需使用，请立即在平台上确认该虚拟机，确认后可自行开机；否则信息中心将予回收。"
        after_en = (
            "If you still need one, confirm it in the portal now and start it again; "
            "otherwise it will be decommissioned."
        )
    else:
        verb_zh, verb_en = "已回收", "decommissioned"
        after_zh = "虚拟机已删除，其IP地址和配额已释放。"
        after_en = "The VMs are deleted; their addresses and quota are freed."
    notify(
        session,
        MailEvent.CLEANUP_ACTION,
        unit_id,
        subject_zh=f"{campaign.name}：本单位 {len(items)} 台虚拟机{verb_zh}",
        subject_en=f"{campaign.name}: {len(items)} VM(s) of your unit {verb_en}",
        body_zh=(
            f"{zh}：\n\n{campaign.name}中，本单位以下虚拟机{verb_zh}（{reason}）：\n\n"
            f"{_lines(items, english=False)}\n\n{after_zh}"
        ),
        body_en=(
            f"{en}:\n\nIn {campaign.name}, these VMs of your unit were {verb_en} ({reason}):\n\n"
            f"{_lines(items, english=True)}\n\n{after_en}"
        ),
        related_type="cleanup_campaign",
        related_id=campaign.id,
        link=pages.CLEANUP,
    )
