"""Forbidden services (issue 4 point 9; agreement §6): Nmap reports in, violations out, exemptions, and
the center's shutdown of a violating VM.

"未经有关部门同意，严禁在服务器上私设代理、论坛、邮件、DNS等类似的服务…甲方有权关闭虚拟机". The center
uploads an Nmap XML report (``-oX``) of a scan of the VM address pool. The report is read by
``vmportal.compliance.nmap`` (expat driven directly: no DTD, no entities, so neither XXE nor "billion
laughs"), each open port classified by ``policies.forbidden_services``.

**Once per appearance.** A host is a VM when one of its addresses is a VM's (its delivered address or
an inventory IP; an address two VMs claim names neither). A forbidden service on it raises a
violation keyed ``<vm>:<protocol>/<port>:<kind>`` (``open_key``, unique while set). While that
violation is open (or the VM shut down over it) the same service in later scans only moves its
``last_seen``; a later scan in which the VM's host is up and the port was scanned but is not open
resolves it (``open_key`` cleared); if the service comes back, that is a new violation. A host that
is down (the VM is off, perhaps shut down over it) or a port the scan did not cover (``scaninfo``
ranges, or the port listed with another state) resolves nothing: absence of evidence is not
evidence of absence.

**Exemptions** are the center's approval of a service on a VM (kind, optionally protocol and port,
a reason, optionally an expiry): an exempted service raises nothing, and granting one closes the
matching open violations (``exempted``). A revoked or expired exemption exempts nothing more.

**Shutdown.** The center may shut the VM down over an open violation: a hard power-off queued through
the VM power service (``vm.service.enqueue_power``, after the VM's earlier operations, audited like
any power operation); the violation records the operation and becomes ``shut_down``.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any
from xml.etree.ElementTree import Element

from sqlmodel import Session, col, func, or_, select

from hypervisors.base import PowerAction, PowerState
from policies.base import Deny
from policies.forbidden_services import KIND_NAMES, ServiceKind, check_forbidden_service
from policies.roles import Actor, Role
from vmportal.alerts.model import ParseError, normalise_ip
from vmportal.audit.service import Who, record
from vmportal.compliance.nmap import NmapHost, NmapReport, forbidden_services, parse_nmap_xml, safe_xml_root
from vmportal.incidents.models import ServiceExemption, ServiceScan, ServiceViolation, ViolationState
from vmportal.kit import db, errors
from vmportal.kit.scope import can_see_unit
from vmportal.kit.sql import insert_or_nothing
from vmportal.mail import service as notification
from vmportal.mail.service import MailEvent
from vmportal.vm import service as vm_service
from vmportal.vm.models import VM, Lifecycle

#: Largest report accepted: a /16 scanned with -sV fits easily (answered 413 beyond).
MAX_SCAN_BYTES = 32 * 1024 * 1024
#: States in which a violation holds its ``open_key`` (still "this appearance").
HOLDING = frozenset({ViolationState.OPEN, ViolationState.SHUT_DOWN})


def violation_key(vm_id: int, protocol: str, port: int, kind: ServiceKind | str) -> str:
    return f"{vm_id}:{protocol}/{port}:{ServiceKind(kind).value}"


# ---- reading the report -----------------------------------------------------------------------------


def _ranges(services: str) -> list[tuple[int, int]]:
    out = []
    for part in services.split(","):
        lo, _, hi = part.strip().partition("-")
        if lo.isdigit() and (not hi or hi.isdigit()):
            out.append((int(lo), int(hi or lo)))
    return out


@dataclass(frozen=True)
class Coverage:
    """Which ports the scan probed, per protocol (``<scaninfo>``); None: not stated, assume all."""

    ranges: dict[str, list[tuple[int, int]]] | None

    @classmethod
    def of(cls, root: Element) -> Coverage:
        infos = root.findall("scaninfo")
        if not infos:
            return cls(None)
        ranges: dict[str, list[tuple[int, int]]] = defaultdict(list)
        for info in infos:
            protocol = (info.get("protocol") or "").strip().lower()
            ranges[protocol].extend(_ranges(info.get("services") or ""))
        return cls(dict(ranges))

    def covers(self, host: NmapHost, protocol: str, port: int) -> bool:
        if any(p.protocol == protocol and p.port == port for p in host.ports):
            return True  # listed: open, closed or filtered, it was looked at
        if self.ranges is None:
            return True
        return any(lo <= port <= hi for lo, hi in self.ranges.get(protocol, []))


def _finished_at(root: Element) -> datetime | None:
    finished = root.find("runstats/finished")
    stamp = finished.get("time", "") if finished is not None else ""
    return datetime.fromtimestamp(int(stamp), tz=UTC) if stamp.isdigit() and len(stamp) <= 11 else None


def read_report(data: bytes) -> tuple[NmapReport, Coverage, datetime | None]:
    """The report, or 422/400 saying why it is not one (unsafe XML included)."""
    if not data.strip():
        raise errors.InvalidField("file", "empty", "the file is empty", message_zh="文件为空")
    try:
        report = parse_nmap_xml(data)
        root = safe_xml_root(data)
    except ParseError as exc:
        if exc.code == "malformed_xml":
            raise errors.BadRequest(
                exc.reason, message_zh=f"不是格式正确的XML：{exc.reason}", field="file"
            ) from None
        raise errors.InvalidField(
            "file", exc.code, exc.reason, message_zh=f"无法识别的Nmap报告：{exc.reason}"
        ) from None
    return report, Coverage.of(root), _finished_at(root)


# ---- the inventory ----------------------------------------------------------------------------------


def vm_addresses(session: Session) -> dict[str, int]:
    """Every active VM's addresses (delivered address, inventory IPs) → VM id; shared ones left out."""
    book: dict[str, int | None] = {}
    for vm_id, ip_address, ips in session.exec(
        select(VM.id, VM.ip_address, VM.ips).where(col(VM.lifecycle) == Lifecycle.ACTIVE.value)
    ):
        for value in {ip_address, *(ips or [])}:
            ip = normalise_ip(value)
            if ip is None or vm_id is None:
                continue
            book[ip] = vm_id if book.get(ip, vm_id) == vm_id else None
    return {ip: vm for ip, vm in book.items() if vm is not None}


def _active_exemptions(
    session: Session, vm_ids: Iterable[int], now: datetime
) -> dict[int, list[ServiceExemption]]:
    out: dict[int, list[ServiceExemption]] = defaultdict(list)
    ids = list(vm_ids)
    if not ids:
        return out
    for e in session.exec(
        select(ServiceExemption).where(
            col(ServiceExemption.vm_id).in_(ids),
            col(ServiceExemption.revoked_at).is_(None),
            or_(col(ServiceExemption.expires_at).is_(None), col(ServiceExemption.expires_at) > now),
        )
    ):
        out[e.vm_id].append(e)
    return out


def exempts(exemption: ServiceExemption, kind: str, protocol: str, port: int) -> bool:
    return (
        exemption.service == kind
        and (exemption.protocol is None or exemption.protocol == protocol)
        and (exemption.port is None or exemption.port == port)
    )


# ---- uploading a scan ---------------------------------------------------------------------------------


@dataclass
class ScanOutcome:
    scan: ServiceScan
    raised: list[ServiceViolation] = field(default_factory=list)
    still_open: list[ServiceViolation] = field(default_factory=list)
    resolved: list[ServiceViolation] = field(default_factory=list)
    exempted: list[dict[str, Any]] = field(default_factory=list)  # seen, but approved
    unmatched_hosts: list[str] = field(default_factory=list)  # hosts up that are no VM of the inventory


def upload_scan(session: Session, actor: Actor, who: Who, filename: str, data: bytes) -> ScanOutcome:
    if len(data) > MAX_SCAN_BYTES:
        raise errors.PayloadTooLarge(
            f"the report is larger than {MAX_SCAN_BYTES} bytes",
            message_zh=f"扫描报告超过 {MAX_SCAN_BYTES} 字节的上限",
            limit=MAX_SCAN_BYTES,
        )
    report, coverage, finished_at = read_report(data)
    now = db.utcnow()
    scanner = " ".join(x for x in (report.scanner, report.version, report.args) if x)
    scan = ServiceScan(
        uploaded_by=actor.user_id,
        uploaded_at=now,
        filename=filename[:255],
        sha256=hashlib.sha256(data).hexdigest(),
        scanner=scanner[:500],
        started_at=report.started_at,
        finished_at=finished_at,
        hosts_up=sum(1 for h in report.hosts if h.status == "up"),
        open_ports=sum(len(h.open_ports) for h in report.hosts),
    )
    session.add(scan)
    session.flush()
    assert scan.id is not None
    outcome = ScanOutcome(scan)

    addresses = vm_addresses(session)
    hosts_by_vm: dict[int, list[NmapHost]] = defaultdict(list)
    for host in report.hosts:
        if host.status != "up":
            continue
        vm_id = next((addresses[a] for a in host.addresses if a in addresses), None)
        if vm_id is None:
            outcome.unmatched_hosts.extend(host.addresses[:1])
        else:
            hosts_by_vm[vm_id].append(host)
    exemptions = _active_exemptions(session, hosts_by_vm, now)
    seen: set[str] = set()
    found_on = [
        (vm_id, host, found)
        for vm_id, hosts in hosts_by_vm.items()
        for host in hosts
        for found in forbidden_services(replace(report, hosts=(host,)))
    ]
    for vm_id, host, found in found_on:
        port = found.port
        kind = found.kind.value
        if any(exempts(e, kind, port.protocol, port.port) for e in exemptions.get(vm_id, [])):
            outcome.exempted.append(
                {"vm_id": vm_id, "protocol": port.protocol, "port": port.port, "service": kind}
            )
            continue
        key = violation_key(vm_id, port.protocol, port.port, kind)
        if key in seen:
            continue
        seen.add(key)
        existing = session.exec(select(ServiceViolation).where(col(ServiceViolation.open_key) == key)).first()
        if existing is not None:
            existing.last_seen = now
            existing.last_scan_id = scan.id
            session.add(existing)
            outcome.still_open.append(existing)
            continue
        vm = session.get(VM, vm_id)
        verdict = check_forbidden_service(found.kind, False, service=port.facts())
        violation = ServiceViolation(
            vm_id=vm_id,
            unit_id=vm.unit_id if vm is not None else None,
            scan_id=scan.id,
            last_scan_id=scan.id,
            ip=next(
                (a for a in host.addresses if a in addresses), host.addresses[0] if host.addresses else ""
            ),
            protocol=port.protocol,
            port=port.port,
            service=kind,
            product=port.product[:200],
            version=port.version[:100],
            evidence={
                "service_name": port.service,
                "extrainfo": port.extrainfo,
                "tunnel": port.tunnel,
                "hostnames": list(host.hostnames),
                "scripts": {s.id: s.output[:2000] for s in port.scripts},
            },
            reasons_en=[verdict.message_en] if isinstance(verdict, Deny) else [],
            reasons_zh=[verdict.message_zh] if isinstance(verdict, Deny) else [],
            open_key=key,
            first_seen=now,
            last_seen=now,
        )
        new_id = insert_or_nothing(session, violation, ["open_key"])
        if new_id is None:  # a concurrent upload raised it a moment ago
            continue
        raised = session.get(ServiceViolation, new_id)
        assert raised is not None
        outcome.raised.append(raised)

    # Gone: the VM's host is up in this scan, the port was probed, the service is not there.
    if hosts_by_vm:
        for violation in session.exec(
            select(ServiceViolation).where(
                col(ServiceViolation.vm_id).in_(list(hosts_by_vm)),
                col(ServiceViolation.open_key).is_not(None),
            )
        ):
            if violation.open_key in seen:
                continue
            if not any(
                coverage.covers(h, violation.protocol, violation.port) for h in hosts_by_vm[violation.vm_id]
            ):
                continue
            violation.state = ViolationState.RESOLVED.value
            violation.open_key = None
            violation.resolved_at = now
            violation.note = (violation.note + f" resolved: not seen in scan {scan.id}").strip()[:1000]
            session.add(violation)
            outcome.resolved.append(violation)

    scan.violations_raised = len(outcome.raised)
    session.add(scan)
    record(
        session,
        who,
        "security.scan.upload",
        "service_scan",
        scan.id,
        after={
            "sha256": scan.sha256,
            "hosts_up": scan.hosts_up,
            "raised": [v.id for v in outcome.raised],
            "still_open": [v.id for v in outcome.still_open],
            "resolved": [v.id for v in outcome.resolved],
            "exempted": len(outcome.exempted),
            "unmatched_hosts": len(outcome.unmatched_hosts),
        },
    )
    _mail_raised(session, outcome.raised)
    return outcome


def _describe(v: ServiceViolation) -> tuple[str, str]:
    kind_zh, kind_en = KIND_NAMES[ServiceKind(v.service)]
    product = f"（{v.product}）" if v.product else ""
    return (
        f"{v.ip} {v.port}/{v.protocol} {kind_zh}服务{product}",
        f"{v.ip} {v.port}/{v.protocol} {kind_en} service" + (f" ({v.product})" if v.product else ""),
    )


def _mail_raised(session: Session, raised: list[ServiceViolation]) -> None:
    per_unit: dict[int | None, list[ServiceViolation]] = defaultdict(list)
    for v in raised:
        per_unit[v.unit_id].append(v)
    for unit_id, items in per_unit.items():
        lines = [_describe(v) for v in items]
        notification.notify(
            session,
            MailEvent.VIOLATION,
            unit_id,
            subject_zh=f"扫描发现违规服务 {len(items)} 项，请关闭或申请批准",
            subject_en=f"A scan found {len(items)} forbidden service(s): stop them or ask for approval",
            body_zh="信息中心扫描发现您单位的虚拟机开放了以下服务：\n\n"
            + "\n".join(f"  #{v.id} {zh}" for v, (zh, _) in zip(items, lines, strict=True))
            + "\n\n"
            + (items[0].reasons_zh[0] if items[0].reasons_zh else ""),
            body_en="A scan by the center found these services on your unit's VMs:\n\n"
            + "\n".join(f"  #{v.id} {en}" for v, (_, en) in zip(items, lines, strict=True))
            + "\n\n"
            + (items[0].reasons_en[0] if items[0].reasons_en else ""),
            related_type="service_scan",
            related_id=items[0].scan_id or "",
            link="/api/v1/violations",
        )


# ---- exemptions -------------------------------------------------------------------------------------


def grant_exemption(
    session: Session,
    actor: Actor,
    who: Who,
    *,
    vm_id: int,
    kind: ServiceKind,
    reason: str,
    port: int | None = None,
    protocol: str | None = None,
    expires_at: datetime | None = None,
) -> tuple[ServiceExemption, list[ServiceViolation]]:
    """The center approves a service on a VM; matching open violations close as ``exempted``."""
    vm = session.get(VM, vm_id)
    if vm is None:
        raise errors.InvalidField("vm_id", "exists", f"VM {vm_id} does not exist", message_zh="虚拟机不存在")
    now = db.utcnow()
    if expires_at is not None and expires_at <= now:
        raise errors.InvalidField(
            "expires_at", "future", "the expiry must be in the future", message_zh="有效期须晚于当前时间"
        )
    if not reason.strip():
        raise errors.InvalidField(
            "reason", "required", "say who approved it and why", message_zh="请填写批准依据"
        )
    exemption = ServiceExemption(
        vm_id=vm_id,
        unit_id=vm.unit_id,
        service=kind.value,
        protocol=protocol,
        port=port,
        reason=reason.strip()[:1000],
        granted_by=actor.user_id,
        granted_at=now,
        expires_at=expires_at,
    )
    session.add(exemption)
    session.flush()
    closed = []
    for violation in session.exec(
        select(ServiceViolation).where(
            col(ServiceViolation.vm_id) == vm_id,
            col(ServiceViolation.open_key).is_not(None),
            col(ServiceViolation.service) == kind.value,
        )
    ):
        if not exempts(exemption, violation.service, violation.protocol, violation.port):
            continue
        violation.state = ViolationState.EXEMPTED.value
        violation.open_key = None
        violation.resolved_at = now
        violation.decided_by = actor.user_id
        violation.note = f"exempted by exemption {exemption.id}: {exemption.reason}"[:1000]
        session.add(violation)
        closed.append(violation)
    record(
        session,
        who,
        "security.exemption.grant",
        "service_exemption",
        exemption.id,
        after={
            "vm_id": vm_id,
            "service": kind.value,
            "protocol": protocol,
            "port": port,
            "expires_at": expires_at.isoformat() if expires_at else None,
            "closed_violations": [v.id for v in closed],
        },
        detail=exemption.reason,
        unit_id=vm.unit_id,
    )
    return exemption, closed


def revoke_exemption(session: Session, actor: Actor, who: Who, exemption_id: int) -> ServiceExemption:
    exemption = session.get(ServiceExemption, exemption_id)
    if exemption is None:
        raise errors.NotFound("exemption", exemption_id)
    if exemption.revoked_at is not None:
        raise errors.StateConflict(
            "exemption", "revoked", "revoke", message=f"exemption {exemption_id} is revoked already"
        )
    exemption.revoked_at = db.utcnow()
    exemption.revoked_by = actor.user_id
    session.add(exemption)
    record(
        session,
        who,
        "security.exemption.revoke",
        "service_exemption",
        exemption_id,
        before={"revoked_at": None},
        after={"revoked_at": exemption.revoked_at.isoformat()},
        unit_id=exemption.unit_id,
    )
    return exemption


def list_exemptions(
    session: Session, actor: Actor, *, vm_id: int | None = None, active: bool | None = None
) -> list[ServiceExemption]:
    conditions: list[Any] = []
    if actor.role in (Role.UNIT_ADMIN, Role.UNIT_LEAD):
        conditions.append(col(ServiceExemption.unit_id) == actor.unit_id)
    if vm_id is not None:
        conditions.append(col(ServiceExemption.vm_id) == vm_id)
    rows = list(
        session.exec(select(ServiceExemption).where(*conditions).order_by(col(ServiceExemption.id).desc()))
    )
    if active is not None:
        now = db.utcnow()
        rows = [e for e in rows if is_active(e, now) == active]
    return rows


def is_active(e: ServiceExemption, now: datetime) -> bool:
    return e.revoked_at is None and (e.expires_at is None or e.expires_at > now)


# ---- shutting a VM down -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Shutdown:
    violation: ServiceViolation
    operation_id: int | None  # None: the VM was already off


def shutdown(session: Session, actor: Actor, who: Who, violation_id: int, reason: str = "") -> Shutdown:
    """The center shuts the VM down over an open violation (agreement §6), through the power service."""
    violation = session.exec(
        select(ServiceViolation)
        .where(col(ServiceViolation.id) == violation_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).first()
    if violation is None:
        raise errors.NotFound("violation", violation_id)
    if violation.state != ViolationState.OPEN.value:
        exc = errors.StateConflict(
            "violation",
            violation.state,
            "shutdown",
            message=f"cannot shut the VM down over violation {violation_id} in state '{violation.state}' "
            "(only from: open)",
        )
        exc.message_zh = f"违规记录当前状态为“{violation.state}”，只有未处理（open）的违规可以据此关闭虚拟机"
        raise exc
    vm = vm_service.lock_vm(session, violation.vm_id)
    if vm is None or vm.lifecycle != Lifecycle.ACTIVE:
        raise errors.StateConflict("vm", vm.lifecycle if vm else "missing", "shutdown")
    zh, en = _describe(violation)
    why = f"forbidden service (violation {violation_id}: {en})" + (f": {reason}" if reason else "")
    operation_id: int | None = None
    if vm.power_state != PowerState.STOPPED.value:
        op = vm_service.enqueue_power(
            session, vm.id or 0, PowerAction.STOP, who=who, reason=why[:500], requested_by=actor.user_id
        )
        operation_id = op.id
    now = db.utcnow()
    violation.state = ViolationState.SHUT_DOWN.value
    violation.decided_by = actor.user_id
    violation.note = (reason or "shut down by the center")[:1000]
    violation.evidence = {
        **(violation.evidence or {}),
        "shutdown": {"operation_id": operation_id, "at": now.isoformat(), "by": who.actor, "reason": reason},
    }
    session.add(violation)
    record(
        session,
        who,
        "security.violation.shutdown",
        "service_violation",
        violation_id,
        before={"state": ViolationState.OPEN.value},
        after={"state": violation.state, "vm_id": vm.id, "operation_id": operation_id},
        detail=reason,
        unit_id=violation.unit_id,
    )
    notification.notify(
        session,
        MailEvent.VIOLATION_SHUTDOWN,
        violation.unit_id,
        subject_zh=f"虚拟机 {vm.name} 因违规服务已被信息中心关闭",
        subject_en=f"VM {vm.name} shut down by the center over a forbidden service",
        body_zh=f"信息中心扫描发现虚拟机 {vm.name} 开放 {zh}，未经批准，"
        f"依据《虚拟机服务协议书》第6条已关闭该虚拟机。"
        + (f"\n说明：{reason}" if reason else "")
        + "\n请关闭该服务后联系信息中心，或申请批准。",
        body_en=f"A scan found {en} on VM {vm.name} without approval; under §6 of the VM service agreement "
        "the center shut the VM down."
        + (f"\nNote: {reason}" if reason else "")
        + "\nStop the service and contact the center, or ask for its approval.",
        related_type="service_violation",
        related_id=violation_id,
        link=f"/api/v1/violations/{violation_id}",
    )
    return Shutdown(violation, operation_id)


# ---- reading ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ViolationFilters:
    state: ViolationState | None = None
    open: bool | None = None
    vm_id: int | None = None
    unit_id: int | None = None
    scan_id: int | None = None
    service: ServiceKind | None = None
    limit: int = 50
    offset: int = 0


def list_violations(
    session: Session, actor: Actor, f: ViolationFilters
) -> tuple[list[ServiceViolation], int]:
    conditions: list[Any] = []
    if actor.role in (Role.UNIT_ADMIN, Role.UNIT_LEAD):
        conditions.append(col(ServiceViolation.unit_id) == actor.unit_id)
    if f.state is not None:
        conditions.append(col(ServiceViolation.state) == f.state.value)
    if f.open is not None:
        conditions.append(
            col(ServiceViolation.open_key).is_not(None)
            if f.open
            else col(ServiceViolation.open_key).is_(None)
        )
    if f.vm_id is not None:
        conditions.append(col(ServiceViolation.vm_id) == f.vm_id)
    if f.unit_id is not None:
        conditions.append(col(ServiceViolation.unit_id) == f.unit_id)
    if f.scan_id is not None:
        conditions.append(
            or_(col(ServiceViolation.scan_id) == f.scan_id, col(ServiceViolation.last_scan_id) == f.scan_id)
        )
    if f.service is not None:
        conditions.append(col(ServiceViolation.service) == f.service.value)
    rows = session.exec(
        select(ServiceViolation)
        .where(*conditions)
        .order_by(col(ServiceViolation.id).desc())
        .limit(f.limit)
        .offset(f.offset)
    ).all()
    total = int(session.exec(select(func.count()).select_from(ServiceViolation).where(*conditions)).one())
    return list(rows), total


def get_violation(session: Session, actor: Actor, violation_id: int) -> ServiceViolation:
    violation = session.get(ServiceViolation, violation_id)
    if violation is None or not can_see_unit(actor, violation.unit_id):
        raise errors.NotFound("violation", violation_id)
    return violation


def list_scans(session: Session, limit: int = 50, offset: int = 0) -> tuple[list[ServiceScan], int]:
    rows = session.exec(
        select(ServiceScan).order_by(col(ServiceScan.id).desc()).limit(limit).offset(offset)
    ).all()
    total = int(session.exec(select(func.count()).select_from(ServiceScan)).one())
    return list(rows), total


def get_scan(session: Session, scan_id: int) -> ServiceScan:
    scan = session.get(ServiceScan, scan_id)
    if scan is None:
        raise errors.NotFound("scan", scan_id)
    return scan
