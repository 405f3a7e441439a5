"""Forbidden services (issue 4 point 9; agreement §6): Nmap reports in, violations out.

"未经有关部门同意，严禁在服务器上私设代理、论坛、邮件、DNS等类似的服务…甲方有权关闭虚拟机". The center
uploads an Nmap XML report (``-oX``) of a scan of the VM address pool. The report is read by
:mod:`vmportal.compliance.nmap` (expat driven directly: no DTD, no entities, so neither XXE nor
"billion laughs"), each open port classified by ``policies.forbidden_services``. The route hands this
module the report's bytes; how large a body may be is the route's business.

**Once per appearance.** A host is a VM when one of its addresses is a VM's (its delivered address or
an inventory IP; an address two VMs claim names neither). A forbidden service on it raises a
violation keyed ``<vm>:<protocol>/<port>:<kind>`` (``open_key``, unique while set). While that
violation is open (or the VM shut down over it) the same service in later scans only moves its
``last_seen``; a later scan in which the VM's host is up and the port was scanned but is not open
resolves it (``open_key`` cleared); if the service comes back, that is a new violation. A host that
is down (the VM is off, perhaps shut down over it) or a port the scan did not cover (``scaninfo``
ranges, or the port listed with another state) resolves nothing: absence of evidence is not
evidence of absence. An exempted service (:mod:`.exemptions`) raises nothing.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any
from xml.etree.ElementTree import Element

from sqlmodel import Session

from policies.base import Deny
from policies.forbidden_services import ServiceKind, check_forbidden_service
from policies.roles import Actor
from vmportal.alerts.model import ParseError, normalise_ip
from vmportal.audit.service import Who, record
from vmportal.compliance import repository
from vmportal.compliance.nmap import NmapHost, NmapReport, forbidden_services, parse_nmap_xml, safe_xml_root
from vmportal.compliance.schemas import MAX_SCAN_BYTES
from vmportal.compliance.service import mails
from vmportal.compliance.service.exemptions import exempts
from vmportal.incidents.models import ServiceScan, ServiceViolation, ViolationState
from vmportal.kit import db, errors
from vmportal.kit.paging import Page, PageRequest

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
    for vm_id, ip_address, ips in repository.active_vm_addresses(session):
        for value in {ip_address, *(ips or [])}:
            ip = normalise_ip(value)
            if ip is None or vm_id is None:
                continue
            book[ip] = vm_id if book.get(ip, vm_id) == vm_id else None
    return {ip: vm for ip, vm in book.items() if vm is not None}


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
    """Read an Nmap report and raise, keep or resolve the violations it shows; the units are told."""
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
    exemptions = repository.active_exemptions(session, hosts_by_vm, now)
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
        existing = repository.violation_holding(session, key)
        if existing is not None:
            existing.last_seen = now
            existing.last_scan_id = scan.id
            session.add(existing)
            outcome.still_open.append(existing)
            continue
        vm = repository.vm(session, vm_id)
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
        raised = repository.add_violation(session, violation)
        if raised is not None:  # else a concurrent upload raised it a moment ago
            outcome.raised.append(raised)

    # Gone: the VM's host is up in this scan, the port was probed, the service is not there.
    if hosts_by_vm:
        for violation in repository.holding_violations(session, hosts_by_vm):
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
    mails.violations_raised(session, outcome.raised)
    return outcome


# ---- reading ----------------------------------------------------------------------------------------


def list_scans(session: Session, page: PageRequest) -> Page[ServiceScan]:
    """The uploaded scans, newest first (the center's and the auditor's reading)."""
    rows, total = repository.scans(session, page)
    return Page(rows, total, page.limit, page.offset)


def get_scan(session: Session, scan_id: int) -> ServiceScan:
    return repository.scan(session, scan_id)
