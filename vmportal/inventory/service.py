"""Inventory reconciliation: what each hypervisor reports against what the portal believes.

The hypervisor is the truth for power state, addresses and existence; the portal is the truth for
ownership (unit, system) and security state. One sync per connection:

* power-state drift is corrected (and audited: a VM powered on behind the portal's back matters);
* a VM the portal governs that the hypervisor no longer has is marked ``missing``;
* a VM on the hypervisor the portal does not know is recorded as unregistered, for the center to
  assign to a unit and system or to clean up (plan 二(二)1, 虚拟机清理);
* inventory IPs and MACs are kept per VM: alerts are matched on them.

The work is one inventory call, one query for the connection's rows, and bulk writes, so a sync
of thousands of VMs costs little more than the hypervisor's own retrieve.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from hypervisors import HypervisorError, VMInfo
from vmportal import db, errors
from vmportal.audit.service import Who, record
from vmportal.connection.models import HypervisorConnection
from vmportal.connection.service import adapter_for
from vmportal.vm.models import VM, Lifecycle

log = logging.getLogger(__name__)


@dataclass
class SyncReport:
    connection_id: int
    seen: int = 0
    updated: int = 0
    drift: list[dict[str, Any]] = field(default_factory=list)
    missing: list[int] = field(default_factory=list)
    reappeared: list[int] = field(default_factory=list)
    unregistered: list[int] = field(default_factory=list)
    error: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "connection_id": self.connection_id,
            "seen": self.seen,
            "updated": self.updated,
            "drift": self.drift,
            "missing": self.missing,
            "reappeared": self.reappeared,
            "unregistered": self.unregistered,
            "error": self.error,
        }


def _observed(info: VMInfo) -> dict[str, Any]:
    return {
        "power_state": str(info.power_state),
        "ips": list(info.ips),
        "macs": [n.mac for n in info.nics if n.mac],
        "network_connected": info.network_connected,
        "vcpus": info.vcpus,
        "memory_gib": max(round(info.memory_mib / 1024), 0),
        "disk_gib": round(info.disk_gib),
    }


def sync_connection(session: Session, conn: HypervisorConnection, who: Who | None = None) -> SyncReport:
    """Reconcile one connection. Raises nothing for hypervisor trouble: the report says why."""
    assert conn.id is not None
    who = who or Who.system("inventory-sync")
    report = SyncReport(connection_id=conn.id)
    try:
        inventory = [vm for vm in adapter_for(conn).list_vms() if not vm.is_template]
    except HypervisorError as exc:
        report.error = exc.message
        return report
    report.seen = len(inventory)
    now = db.utcnow()
    rows = {r.hypervisor_ref: r for r in session.exec(select(VM).where(VM.connection_id == conn.id))}

    updates: list[dict[str, Any]] = []
    for info in inventory:
        row = rows.get(info.ref)
        if row is None:
            continue
        observed = _observed(info)
        changed = {k for k, v in observed.items() if getattr(row, k) != v}
        lifecycle = row.lifecycle
        if row.lifecycle == Lifecycle.MISSING:
            lifecycle = Lifecycle.ACTIVE
            report.reappeared.append(row.id or 0)
        elif not changed:
            continue
        if "power_state" in changed and row.registered and row.lifecycle != Lifecycle.DECOMMISSIONED:
            report.drift.append(
                {
                    "vm_id": row.id,
                    "name": row.name,
                    "portal": row.power_state,
                    "hypervisor": observed["power_state"],
                }
            )
            record(
                session,
                who,
                "vm.power_drift",
                "vm",
                row.id,
                before={"power_state": row.power_state},
                after={"power_state": observed["power_state"]},
                unit_id=row.unit_id,
                detail="power state corrected from the hypervisor's inventory",
            )
        updates.append(
            {
                "b_id": row.id,
                "b_version": row.version,
                "version": row.version + 1,
                "lifecycle": lifecycle,
                "synced_at": now,
                **observed,
            }
        )
    if updates:
        # One executemany, guarded by the version read above: a power operation or containment
        # that changed the VM meanwhile wins, and this sync's older reading is dropped.
        table = VM.__table__  # type: ignore[attr-defined]
        stmt = (
            sa.update(table)
            .where(table.c.id == sa.bindparam("b_id"), table.c.version == sa.bindparam("b_version"))
            .values({k: sa.bindparam(k) for k in updates[0] if not k.startswith("b_")})
        )
        session.connection().execute(stmt, updates)
        report.updated = len(updates)

    seen_refs = {info.ref for info in inventory}
    for ref, row in rows.items():
        if ref not in seen_refs and row.lifecycle == Lifecycle.ACTIVE:
            row.lifecycle = Lifecycle.MISSING
            row.synced_at = now
            session.add(row)
            report.missing.append(row.id or 0)
            record(
                session,
                who,
                "vm.missing",
                "vm",
                row.id,
                before={"lifecycle": Lifecycle.ACTIVE},
                after={"lifecycle": Lifecycle.MISSING},
                unit_id=row.unit_id,
                detail="the hypervisor no longer reports this VM",
            )

    new = [info for info in inventory if info.ref not in rows]
    if new:
        values = [
            {
                "connection_id": conn.id,
                "hypervisor_ref": info.ref,
                "name": info.name[:200],
                "unit_id": None,
                "registered": False,
                "lifecycle": Lifecycle.ACTIVE,
                "security_state": "normal",
                "created_at": now,
                "synced_at": now,
                "hostname": "",
                "template_name": "",
                "admin_account": "",
                "version": 0,
                "ip_address": info.ips[0] if info.ips else None,
                **_observed(info),
            }
            for info in new
        ]
        ids = session.execute(sa.insert(VM).returning(col(VM.id)), values).scalars().all()
        report.unregistered = [int(i) for i in ids]
        record(
            session,
            who,
            "inventory.unregistered_found",
            "connection",
            conn.id,
            after={"count": len(new), "refs": [i.ref for i in new[:50]]},
            detail="VMs on the hypervisor that the portal does not govern",
        )
    log.info("sync of connection %s: %s", conn.name, report.as_dict() | {"drift": len(report.drift)})
    return report


def sync_all(who: Who | None = None, connection_id: int | None = None) -> list[SyncReport]:
    """Every active connection, each in its own transaction: one unreachable host spoils nothing."""
    with db.transaction() as session:
        query = select(HypervisorConnection).where(col(HypervisorConnection.active).is_(True))
        if connection_id is not None:
            query = query.where(HypervisorConnection.id == connection_id)
        ids = [c.id for c in session.exec(query)]
    reports = []
    for conn_id in ids:
        with db.transaction() as session:
            conn = session.get(HypervisorConnection, conn_id)
            if conn is not None:
                reports.append(sync_connection(session, conn, who))
    return reports


def assign(session: Session, who: Who, vm_id: int, unit_id: int, system_id: int | None) -> VM:
    """The center takes an unregistered VM under the agreement: it now belongs to a unit."""
    vm = session.get(VM, vm_id)
    if vm is None:
        raise errors.NotFound("vm", vm_id)
    if vm.registered:
        raise errors.StateConflict(
            "vm", "registered", "assign", message=f"vm {vm_id} already belongs to unit {vm.unit_id}"
        )
    from vmportal.unit.models import InformationSystem, Unit

    if session.get(Unit, unit_id) is None:
        raise errors.InvalidField(
            "unit_id", "exists", f"unit {unit_id} does not exist", message_zh="单位不存在"
        )
    if system_id is not None:
        system = session.get(InformationSystem, system_id)
        if system is None or system.unit_id != unit_id:
            raise errors.InvalidField(
                "system_id",
                "belongs_to_unit",
                f"information system {system_id} is not a system of unit {unit_id}",
                message_zh="该信息系统不属于此单位",
            )
    before = {"unit_id": vm.unit_id, "registered": vm.registered}
    vm.unit_id, vm.system_id, vm.registered = unit_id, system_id, True
    vm.ip_address = vm.ip_address or (vm.ips[0] if vm.ips else None)
    session.add(vm)
    record(
        session,
        who,
        "vm.assign",
        "vm",
        vm.id,
        before=before,
        after={"unit_id": unit_id, "system_id": system_id, "registered": True},
        unit_id=unit_id,
    )
    return vm
