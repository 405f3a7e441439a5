"""Planned outages (agreement §9, rule ``maintenance_notice``): the center announces one, the VMs and
units it affects are worked out from the inventory, each unit and the center are mailed; a change
or a cancellation is mailed again; units read the outages touching them; a power request on an
affected VM during an outage is answered with a warning (never refused here).

Scope: a connection (its active VMs), clusters or hosts of a connection, or VMs by id. The VM row
does not store where a VM runs, so clusters and hosts are resolved through the connection's adapter
(its inventory's ``placement``: cluster, host; Proxmox ``node`` counts as a host) when announced, and
matched to the portal's rows by reference. The affected VMs are then a snapshot kept with the window:
a change of times or text mails the same units; another scope is a new announcement.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlmodel import Session

from hypervisors.base import HypervisorError
from policies.base import combine
from policies.maintenance import check_maintenance_notice
from policies.roles import Actor, is_center
from vmportal.audit.service import Who, record
from vmportal.center import service as center
from vmportal.connection.service import adapter_for, get_connection
from vmportal.kit import db, errors
from vmportal.mail.service import MailEvent, beijing, notify
from vmportal.maintenance import repository
from vmportal.maintenance.models import MaintenanceVM, MaintenanceWindow, ScopeKind, WindowState
from vmportal.unit.models import Unit
from vmportal.vm.models import VM, Lifecycle
from vmportal.vm.service import PowerWarning, on_power_warning

_HOST_KEYS = ("host", "node")
_SCOPE_ZH = {
    ScopeKind.CONNECTION: "虚拟化平台连接",
    ScopeKind.CLUSTER: "集群",
    ScopeKind.HOST: "主机",
    ScopeKind.VMS: "指定虚拟机",
}


@dataclass(frozen=True)
class WindowView:
    """A window as the actor may read it: the affected VMs and units limited to the actor's unit."""

    window: MaintenanceWindow
    vms: list[MaintenanceVM]
    units: list[tuple[Unit, int]]  # (unit, how many of its VMs)
    current: bool


# ---- reading ----------------------------------------------------------------------------------------


def get_window(session: Session, actor: Actor, window_id: int) -> MaintenanceWindow:
    """The window if it touches the actor's unit (the center: any); else 404, like a missing one."""
    window = repository.visible_window(session, actor, window_id)
    if window is None:
        raise errors.NotFound("maintenance window", window_id)
    return window


def list_windows(
    session: Session, actor: Actor, *, include_past: bool = False, include_cancelled: bool = False
) -> list[MaintenanceWindow]:
    """Current and coming outages touching the actor's unit (the center: all), the soonest first."""
    return repository.list_windows(
        session, actor, now=db.utcnow(), include_past=include_past, include_cancelled=include_cancelled
    )


def view(session: Session, actor: Actor, window: MaintenanceWindow) -> WindowView:
    assert window.id is not None
    vms = repository.affected(session, window.id, actor)
    counts: dict[int, int] = defaultdict(int)
    for row in vms:
        if row.unit_id is not None:
            counts[row.unit_id] += 1
    units = repository.units_by_ids(session, sorted(counts))
    now = db.utcnow()
    return WindowView(
        window=window,
        vms=vms,
        units=[(units[u], counts[u]) for u in sorted(counts) if u in units],
        current=window.state == WindowState.SCHEDULED and window.starts_at <= now < window.ends_at,
    )


# ---- checks -----------------------------------------------------------------------------------------


def _ensure_center(actor: Actor) -> None:
    if not is_center(actor.role):
        raise errors.Forbidden(
            "only the center announces planned outages", message_zh="只有信息中心可以发布计划停机通知"
        )


def _check_times(starts_at: datetime, ends_at: datetime, now: datetime) -> None:
    if ends_at <= starts_at:
        raise errors.InvalidField(
            "ends_at",
            "after_start",
            f"the outage must end after it starts "
            f"({ends_at.isoformat()} is not after {starts_at.isoformat()})",
            message_zh="结束时间须晚于开始时间",
        )
    if ends_at <= now:
        raise errors.InvalidField(
            "ends_at", "in_future", "the outage is already over", message_zh="结束时间已过，无需再通知"
        )
    if ends_at - starts_at > timedelta(days=31):
        raise errors.InvalidField(
            "ends_at", "max_31_days", "an outage lasts at most 31 days", message_zh="一次停机最长 31 天"
        )


@dataclass(frozen=True)
class Attempt:
    """What a refusal of the notice rule writes to the audit log: who asked for what, on which window
    (an announcement has none yet: ``target_id`` "")."""

    who: Who
    action: str  # maintenance.announce, maintenance.change
    target_id: object
    facts: dict[str, object]


def _check_notice(session: Session, starts_at: datetime, emergency_reason: str, attempt: Attempt) -> int:
    """The rule ``maintenance_notice`` at ``starts_at``: 403 naming it unless an emergency reason is
    given (the refusal audited with result ``denied``); the notice period (hours) in force."""
    hours = center.maintenance_notice_hours(session)
    decision = combine(check_maintenance_notice(db.utcnow(), starts_at, timedelta(hours=hours)))
    if decision.allowed or emergency_reason:
        return hours
    exc = errors.PolicyDenied(decision)
    exc.message += (
        " An unplanned or urgent outage may be announced with an emergency_reason, which is recorded."
    )
    exc.message_zh += "如属紧急情况，可填写紧急原因（emergency_reason）后发布，原因将被记录并告知受影响单位。"
    # The error rolls the request's transaction back, and the audit row with it: the refusal is kept
    # in a transaction of its own (as a refused power operation is). The request's transaction ends
    # first: SQLite has one writer, and it holds nothing worth keeping (reads, a window's row lock).
    session.rollback()
    with db.transaction() as s:
        record(
            s,
            attempt.who,
            attempt.action,
            "maintenance_window",
            attempt.target_id,
            after={**attempt.facts, "notice_hours": hours},
            result="denied",
            detail=" ".join(f"[{d.rule}] {d.message_en}" for d in decision.denials),
        )
    raise exc


# ---- the scope, from the inventory -------------------------------------------------------------------


def _connection(session: Session, connection_id: int | None) -> int:
    if connection_id is None:
        raise errors.InvalidField(
            "connection_id", "required", "this scope needs a connection_id", message_zh="须指定虚拟化平台连接"
        )
    try:
        conn = get_connection(session, connection_id)
    except errors.NotFound:
        raise errors.InvalidField(
            "connection_id",
            "exists",
            f"no hypervisor connection {connection_id}",
            message_zh=f"虚拟化平台连接 {connection_id} 不存在",
        ) from None
    assert conn.id is not None
    return conn.id


def _by_placement(session: Session, connection_id: int, scope: ScopeKind, names: list[str]) -> list[VM]:
    wanted = {n.strip() for n in names if n.strip()}
    if not wanted:
        raise errors.InvalidField(
            "names",
            "required",
            f"name the {scope.value}s out of service",
            message_zh=f"请填写停机的{_SCOPE_ZH[scope]}名称",
        )
    keys = ("cluster",) if scope is ScopeKind.CLUSTER else _HOST_KEYS
    conn = get_connection(session, connection_id)
    try:
        reported = adapter_for(conn).list_vms()
    except HypervisorError as exc:
        raise errors.UpstreamError(
            f"cannot read the inventory of connection {connection_id} "
            f"to find the affected VMs: {exc.message}",
            message_zh=f"无法读取虚拟化平台连接 {connection_id} 的清单以确定受影响的虚拟机：{exc.message}",
        ) from None
    seen: set[str] = set()
    refs: set[str] = set()
    for info in reported:
        where = {info.placement.get(k, "") for k in keys} - {""}
        seen |= where
        if where & wanted and not info.is_template:
            refs.add(info.ref)
    unknown = sorted(wanted - seen)
    if unknown:
        raise errors.InvalidField(
            "names",
            "exists",
            f"connection {connection_id} reports no {scope.value} named {', '.join(unknown)}",
            message_zh=f"虚拟化平台连接 {connection_id} 中没有名为 {'、'.join(unknown)} 的{_SCOPE_ZH[scope]}",
        )
    return [
        vm for vm in repository.active_vms_of_connection(session, connection_id) if vm.hypervisor_ref in refs
    ]


def resolve(
    session: Session, scope: ScopeKind, connection_id: int | None, names: list[str], vm_ids: list[int]
) -> tuple[int | None, list[VM]]:
    """(the connection, the affected active VMs) of a scope; 422 naming the field when it names nothing."""
    scope = ScopeKind(scope)
    if scope is ScopeKind.VMS:
        wanted = sorted(set(vm_ids))
        if not wanted:
            raise errors.InvalidField("vm_ids", "required", "name the VMs", message_zh="请指定虚拟机")
        found = {
            vm.id: vm for vm in repository.vms_by_ids(session, wanted) if vm.lifecycle == Lifecycle.ACTIVE
        }
        missing = [i for i in wanted if i not in found]
        if missing:
            raise errors.InvalidField(
                "vm_ids",
                "exists",
                f"no active VM with id {', '.join(map(str, missing))}",
                message_zh=f"以下虚拟机不存在或已回收：{'、'.join(map(str, missing))}",
            )
        if connection_id is not None:
            _connection(session, connection_id)
        return connection_id, [found[i] for i in wanted]
    conn_id = _connection(session, connection_id)
    if scope is ScopeKind.CONNECTION:
        return conn_id, repository.active_vms_of_connection(session, conn_id)
    return conn_id, _by_placement(session, conn_id, scope, names)


# ---- the center's use cases ---------------------------------------------------------------------------


def announce(
    session: Session,
    actor: Actor,
    who: Who,
    *,
    title: str,
    reason: str,
    scope: ScopeKind,
    starts_at: datetime,
    ends_at: datetime,
    connection_id: int | None = None,
    names: list[str] | None = None,
    vm_ids: list[int] | None = None,
    emergency_reason: str = "",
) -> MaintenanceWindow:
    """Announce a planned outage: times checked (422), the rule ``maintenance_notice`` (403 unless an
    emergency reason is recorded), the affected VMs worked out, the window, its audit row and a mail
    to each affected unit and to the center, all in the caller's transaction."""
    _ensure_center(actor)
    emergency_reason = emergency_reason.strip()
    _check_times(starts_at, ends_at, db.utcnow())
    conn_id, vms = resolve(session, ScopeKind(scope), connection_id, list(names or []), list(vm_ids or []))
    asked: dict[str, object] = {
        "title": title.strip(),
        "scope": ScopeKind(scope).value,
        "connection_id": conn_id,
        "starts_at": starts_at.isoformat(),
        "ends_at": ends_at.isoformat(),
        "vm_ids": [vm.id for vm in vms],
        "unit_ids": sorted({vm.unit_id for vm in vms if vm.unit_id is not None}),
    }
    hours = _check_notice(
        session, starts_at, emergency_reason, Attempt(who, "maintenance.announce", "", asked)
    )
    window = MaintenanceWindow(
        title=title.strip(),
        reason=reason.strip(),
        scope=ScopeKind(scope).value,
        connection_id=conn_id,
        names=sorted({n.strip() for n in names or [] if n.strip()}),
        starts_at=starts_at,
        ends_at=ends_at,
        emergency_reason=emergency_reason,
        notice_hours=hours,
        announced_by=actor.user_id,
    )
    session.add(window)
    session.flush()
    assert window.id is not None
    rows = [
        MaintenanceVM(window_id=window.id, vm_id=vm.id or 0, unit_id=vm.unit_id, vm_name=vm.name)
        for vm in vms
    ]
    session.add_all(rows)
    session.flush()
    record(
        session,
        who,
        "maintenance.announce",
        "maintenance_window",
        window.id,
        after={**_facts(window), "vm_ids": [r.vm_id for r in rows], "unit_ids": _unit_ids(rows)},
        detail=f"emergency: {emergency_reason}" if emergency_reason else "",
    )
    _mail(session, window, rows, MailEvent.MAINTENANCE_ANNOUNCED)
    return window


def change(
    session: Session,
    actor: Actor,
    who: Who,
    window_id: int,
    *,
    title: str | None = None,
    reason: str | None = None,
    starts_at: datetime | None = None,
    ends_at: datetime | None = None,
    emergency_reason: str = "",
) -> MaintenanceWindow:
    """Change a scheduled window's times or text and mail the affected units again. Time newly taken
    (an earlier start, a later end) is held to the notice rule like a new announcement; a later start
    or an earlier end only shortens the outage and needs no notice."""
    _ensure_center(actor)
    window = repository.lock_window(session, window_id)
    if window is None:
        raise errors.NotFound("maintenance window", window_id)
    if window.state != WindowState.SCHEDULED:
        raise errors.StateConflict(
            "maintenance window",
            window.state,
            "change",
            message=f"maintenance window {window_id} was cancelled",
        )
    emergency_reason = emergency_reason.strip()
    new_start = starts_at or window.starts_at
    new_end = ends_at or window.ends_at
    _check_times(new_start, new_end, db.utcnow())
    before = _facts(window)
    asked: dict[str, object] = {
        "before": {"starts_at": before["starts_at"], "ends_at": before["ends_at"]},
        "starts_at": new_start.isoformat(),
        "ends_at": new_end.isoformat(),
    }
    attempt = Attempt(who, "maintenance.change", window_id, asked)
    if new_start < window.starts_at:
        _check_notice(session, new_start, emergency_reason, attempt)
    if new_end > window.ends_at:
        _check_notice(session, max(window.ends_at, new_start), emergency_reason, attempt)
    window.starts_at, window.ends_at = new_start, new_end
    if title is not None:
        window.title = title.strip()
    if reason is not None:
        window.reason = reason.strip()
    if emergency_reason:
        window.emergency_reason = emergency_reason
    if _facts(window) == before:
        return window
    window.changed_at = db.utcnow()
    session.add(window)
    rows = repository.affected(session, window_id)
    record(
        session,
        who,
        "maintenance.change",
        "maintenance_window",
        window_id,
        before=before,
        after=_facts(window),
    )
    _mail(session, window, rows, MailEvent.MAINTENANCE_CHANGED)
    return window


def cancel(session: Session, actor: Actor, who: Who, window_id: int, *, reason: str) -> MaintenanceWindow:
    """Call a window off and tell the affected units (a second cancel changes nothing)."""
    _ensure_center(actor)
    window = repository.lock_window(session, window_id)
    if window is None:
        raise errors.NotFound("maintenance window", window_id)
    if window.state == WindowState.CANCELLED:
        return window
    window.state = WindowState.CANCELLED.value
    window.cancelled_at = db.utcnow()
    window.cancel_reason = reason.strip()
    session.add(window)
    rows = repository.affected(session, window_id)
    record(
        session,
        who,
        "maintenance.cancel",
        "maintenance_window",
        window_id,
        before={"state": WindowState.SCHEDULED.value},
        after={"state": window.state, "reason": window.cancel_reason},
        detail=window.cancel_reason,
    )
    _mail(session, window, rows, MailEvent.MAINTENANCE_CANCELLED)
    return window


def _facts(window: MaintenanceWindow) -> dict[str, object]:
    return {
        "title": window.title,
        "reason": window.reason,
        "scope": window.scope,
        "connection_id": window.connection_id,
        "names": list(window.names),
        "starts_at": window.starts_at.isoformat(),
        "ends_at": window.ends_at.isoformat(),
        "emergency_reason": window.emergency_reason,
        "notice_hours": window.notice_hours,
    }


def _unit_ids(rows: list[MaintenanceVM]) -> list[int]:
    return sorted({r.unit_id for r in rows if r.unit_id is not None})


# ---- mails ----------------------------------------------------------------------------------------------

_SUBJECT = {
    MailEvent.MAINTENANCE_ANNOUNCED: ("计划停机通知", "Planned outage"),
    MailEvent.MAINTENANCE_CHANGED: ("计划停机变更", "Planned outage changed"),
    MailEvent.MAINTENANCE_CANCELLED: ("计划停机取消", "Planned outage cancelled"),
    MailEvent.MAINTENANCE_REMINDER: ("计划停机提醒", "Planned outage reminder"),
}


def _window_text(window: MaintenanceWindow) -> tuple[str, str]:
    span = f"{beijing(window.starts_at)} – {beijing(window.ends_at)}"
    zh = f"停机时间：{span}（北京时间）\n原因：{window.reason}\n"
    en = f"Window: {span} (Beijing time)\nReason: {window.reason}\n"
    if window.emergency_reason:
        zh += f"紧急原因（未能提前 {window.notice_hours} 小时通知）：{window.emergency_reason}\n"
        en += f"Emergency (not announced {window.notice_hours} h ahead): {window.emergency_reason}\n"
    if window.state == WindowState.CANCELLED:
        zh += f"取消原因：{window.cancel_reason}\n"
        en += f"Cancelled because: {window.cancel_reason}\n"
    return zh, en


def _mail(session: Session, window: MaintenanceWindow, rows: list[MaintenanceVM], event: MailEvent) -> int:
    """Mail each affected unit its VMs, and the center a summary (not for a reminder: the center
    announced the outage itself). Returns how many unit mails were queued (a reminder queued before
    under its dedup key is not queued again)."""
    assert window.id is not None
    reminder = event is MailEvent.MAINTENANCE_REMINDER
    subject_zh, subject_en = _SUBJECT[event]
    span = f"{beijing(window.starts_at)} – {beijing(window.ends_at)}"
    detail_zh, detail_en = _window_text(window)
    by_unit: dict[int, list[MaintenanceVM]] = defaultdict(list)
    for row in rows:
        if row.unit_id is not None:
            by_unit[row.unit_id].append(row)
    units = repository.units_by_ids(session, sorted(by_unit))
    link = "/maintenance"
    if event is MailEvent.MAINTENANCE_CANCELLED:
        lead_zh, lead_en = (
            "以下计划停机已取消，受影响的虚拟机将照常运行。",
            "This planned outage is called off.",
        )
    elif reminder:
        lead_zh, lead_en = (
            "提醒：以下计划停机即将开始，期间本单位以下虚拟机的服务可能中断，开关机等电源操作可能失败。",
            "Reminder: this planned outage starts soon; during it the service of your unit's VMs below may "
            "be interrupted and power operations on them may fail.",
        )
    elif event is MailEvent.MAINTENANCE_CHANGED:
        lead_zh, lead_en = (
            "以下计划停机的安排已变更，请以本通知为准。",
            "This planned outage has changed; this notice replaces the earlier one.",
        )
    else:
        lead_zh = (
            "信息中心将进行计划维护，期间以下虚拟机的服务可能中断，开关机等电源操作可能失败。"
            "请提前告知本单位用户。"
        )
        lead_en = (
            "The center will carry out planned maintenance; during it the service of the VMs below may be "
            "interrupted and power operations on them may fail. Please tell your users in advance."
        )
    queued = 0
    for unit_id, vms in sorted(by_unit.items()):
        unit = units.get(unit_id)
        zh_name = unit.name_zh if unit else f"单位 {unit_id}"
        en_name = (unit.name_en or unit.name_zh) if unit else f"unit {unit_id}"
        lines = "\n".join(f"- {r.vm_name}（#{r.vm_id}）" for r in vms)
        lines_en = "\n".join(f"- {r.vm_name} (#{r.vm_id})" for r in vms)
        queued += (
            1
            if notify(
                session,
                event,
                unit_id,
                subject_zh=f"{subject_zh}：{window.title}，{span}",
                subject_en=f"{subject_en}: {window.title}, {span} Beijing time",
                body_zh=f"{zh_name}：\n\n{lead_zh}\n\n{window.title}\n{detail_zh}\n"
                f"本单位受影响的虚拟机（{len(vms)} 台）：\n{lines}",
                body_en=f"{en_name}:\n\n{lead_en}\n\n{window.title}\n{detail_en}\n"
                f"Your unit's VMs affected ({len(vms)}):\n{lines_en}",
                related_type="maintenance_window",
                related_id=window.id,
                link=link,
                dedup_key=reminder_key(window, unit_id) if reminder else None,
            )
            is not None
            else 0
        )
    if reminder:
        return queued
    summary_zh = "\n".join(
        f"- {(units[u].name_zh if u in units else u)}：{len(v)} 台" for u, v in sorted(by_unit.items())
    )
    summary_en = "\n".join(
        f"- {((units[u].name_en or units[u].name_zh) if u in units else u)}: {len(v)} VM(s)"
        for u, v in sorted(by_unit.items())
    )
    unowned = sum(1 for r in rows if r.unit_id is None)
    notify(
        session,
        event,
        None,
        subject_zh=f"{subject_zh}（已通知 {len(by_unit)} 个单位）：{window.title}，{span}",
        subject_en=f"{subject_en} ({len(by_unit)} unit(s) told): {window.title}, {span} Beijing time",
        body_zh=f"{window.title}\n{detail_zh}\n受影响虚拟机 {len(rows)} 台（未登记 {unowned} 台），"
        f"已通知的单位：\n{summary_zh or '（无）'}",
        body_en=f"{window.title}\n{detail_en}\n{len(rows)} VM(s) affected ({unowned} unregistered); "
        f"units told:\n{summary_en or '(none)'}",
        related_type="maintenance_window",
        related_id=window.id,
        link=link,
        center_only=True,
    )
    return queued


# ---- reminders before an outage ------------------------------------------------------------------------


def reminder_key(window: MaintenanceWindow, unit_id: int) -> str:
    """The mail outbox's once-only key of a reminder: one per window, start time and unit. The start
    is in it so that an outage moved later is reminded of again before its new start; the outbox
    keeps the sent ones (``app.retention.KEPT_KINDS``), so the key outlives the mail's pruning."""
    return f"maintenance:{window.id}:reminder:{window.starts_at.astimezone(UTC):%Y%m%dT%H%M%S}:unit:{unit_id}"


def reminder_owed(window: MaintenanceWindow, now: datetime, lead: timedelta) -> bool:
    """Whether the affected units are owed a reminder at ``now``: the window is scheduled, starts
    within ``lead`` and has not started, and its last mail (announcement or change) went out before
    the reminder's time; one announced or changed inside ``lead`` was told recently enough."""
    told = window.changed_at or window.announced_at
    return (
        window.state == WindowState.SCHEDULED
        and now < window.starts_at <= now + lead
        and told < window.starts_at - lead
    )


def windows_to_remind(session: Session, now: datetime, lead: timedelta) -> list[int]:
    """The windows starting within ``lead`` of ``now`` (the reminder task asks, then reminds each)."""
    return repository.windows_starting(session, now, now + lead)


def remind(session: Session, window_id: int, now: datetime, lead: timedelta) -> int:
    """Queue the reminder of one window to each affected unit not reminded yet (its row locked, so
    a change or cancellation at the same moment is seen); how many were queued."""
    window = repository.lock_window(session, window_id)
    if window is None or not reminder_owed(window, now, lead):
        return 0
    return _mail(session, window, repository.affected(session, window_id), MailEvent.MAINTENANCE_REMINDER)


# ---- power operations during an outage -----------------------------------------------------------------


def _warnings(session: Session, vm_id: int) -> list[PowerWarning]:
    """A power request on a VM under an outage now: why it may fail (the VM domain answers it)."""
    out = []
    for window in repository.current_for_vm(session, vm_id, db.utcnow()):
        span = f"{beijing(window.starts_at)} – {beijing(window.ends_at)}"
        out.append(
            PowerWarning(
                code="maintenance",
                message_en=(
                    f"Planned outage #{window.id} '{window.title}' is under way ({span} Beijing time): "
                    f"{window.reason}. The operation may fail or be delayed until it ends."
                ),
                message_zh=(
                    f"计划停机 #{window.id}“{window.title}”正在进行（{span}，北京时间）：{window.reason}。"
                    "本次操作可能失败或延迟到停机结束后完成。"
                ),
                detail={
                    "maintenance_id": window.id,
                    "starts_at": window.starts_at.isoformat(),
                    "ends_at": window.ends_at.isoformat(),
                },
            )
        )
    return out


on_power_warning(_warnings)
