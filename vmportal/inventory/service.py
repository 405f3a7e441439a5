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
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlmodel import Session

from hypervisors import HypervisorError, VMInfo
from vmportal.audit.service import Note, Who, record, record_many
from vmportal.connection.models import HypervisorConnection
from vmportal.connection.service import adapter_for, end_read_transaction
from vmportal.inventory import repository
from vmportal.kit import db, errors
from vmportal.vm.models import VM, Lifecycle

log = logging.getLogger(__name__)


@dataclass
class SyncReport:
    connection_id: int
    connection: str = ""
    seen: int = 0
    updated: int = 0
    drift: list[dict[str, Any]] = field(default_factory=list)
    network_drift: list[dict[str, Any]] = field(default_factory=list)
    missing: list[int] = field(default_factory=list)
    reappeared: list[int] = field(default_factory=list)
    unregistered: list[int] = field(default_factory=list)
    #: VM ids read again by a hold check (``reconcile(recheck=True)``): the hooks look at these even
    #: when nothing drifted, since a containment can be loose while the row already says so.
    checked: list[int] = field(default_factory=list)
    error: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "connection_id": self.connection_id,
            "connection": self.connection,
            "seen": self.seen,
            "updated": self.updated,
            "drift": self.drift,
            "network_drift": self.network_drift,
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


#: The reference a provisioning placeholder row holds until its clone is done: ``pending:<marker>``
#: (``request.service.provisioning``); the clone carries the same marker.
PENDING_PREFIX = "pending:"


def _not_awaited(session: Session, connection_id: int, new: list[VMInfo]) -> list[VMInfo]:
    """``new`` without the VMs a provisioning placeholder of this connection waits for (the clone
    carries the request's marker): the provisioning task takes such a VM onto its placeholder, and
    recording it as unregistered first would make the two rows race for the hypervisor's ref."""
    marked = {f"{PENDING_PREFIX}{info.marker}": info.ref for info in new if info.marker}
    if not marked:
        return new
    awaited = repository.provisioning_refs(session, connection_id, sorted(marked))
    skipped = {marked[ref] for ref in awaited}
    return [info for info in new if info.ref not in skipped]


def sync_connection(session: Session, conn: HypervisorConnection, who: Who | None = None) -> SyncReport:
    """Reconcile one connection. Raises nothing for hypervisor trouble: the report says why."""
    assert conn.id is not None
    # Nothing is written before the hypervisor has answered: end the read transaction, so that on
    # SQLite (whose transactions take the single write lock at their first statement) the portal's
    # other writers are not held up while a large vCenter lists its VMs.
    end_read_transaction(session)
    listed_at = db.utcnow()
    try:
        listed = adapter_for(conn).list_vms()
    except HypervisorError as exc:
        log.warning("sync of connection %s: %s", conn.name, exc.message)
        return SyncReport(connection_id=conn.id, connection=conn.name, error=exc.message)
    return reconcile(session, conn, listed, who, listed_at=listed_at)


#: The VM columns a sync compares and guards on; read as plain rows, not ORM objects, so thousands
#: of VMs cost one query and nothing in the session's identity map.


#: Called after every reconcile with its report, in the same transaction: an upper domain takes part
#: (incidents re-contain a VM that was reconnected or powered on behind the portal's back) without
#: the inventory importing it.
Reconciled = Callable[[Session, SyncReport], None]
_ON_RECONCILED: list[Reconciled] = []


def on_reconciled(hook: Reconciled) -> Reconciled:
    if hook not in _ON_RECONCILED:
        _ON_RECONCILED.append(hook)
    return hook


#: Registered by the incidents domain (above this one): the hypervisor refs of a connection's VMs
#: that a confirmed containment holds, which the watcher reads again on a timer (see watcher).
HeldRefs = Callable[[Session, int], list[str]]
_HELD_REFS: list[HeldRefs] = []


def on_held_refs(lookup: HeldRefs) -> HeldRefs:
    if lookup not in _HELD_REFS:
        _HELD_REFS.append(lookup)
    return lookup


def held_refs(session: Session, connection_id: int) -> list[str]:
    return sorted({ref for lookup in _HELD_REFS for ref in lookup(session, connection_id)})


def reconcile(
    session: Session,
    conn: HypervisorConnection,
    listed: list[VMInfo],
    who: Who | None = None,
    *,
    listed_at: datetime | None = None,
    only: Collection[str] | None = None,
    recheck: bool = False,
) -> SyncReport:
    """Bring the connection's VM rows in line with ``listed`` (the hypervisor's whole inventory,
    read starting at ``listed_at``).

    ``only`` narrows the comparison to those refs (a change stream's batch: ``listed`` holds the
    ones that exist now, a ref of ``only`` missing from ``listed`` is gone); the rows of every other
    VM are neither read nor touched, so a batch of one change costs the same with 20,000 VMs as
    with 100.

    ``recheck`` (the watcher's hold check) lists every compared row in ``report.checked``, so the
    hooks (re-containment) judge those VMs on their stored state, drifted or not.

    The work is a fixed number of statements whatever the number of VMs: one query for the
    connection's rows, one batched update of the changed rows, one of the missing ones, one batched
    insert of the new ones, and one batch of audit rows. Audited: power and network drift of a
    governed VM and a VM gone missing (a row each, so each VM's history shows them), and one row
    for the unregistered VMs found.

    A row the portal itself changed (or created) after the listing began is left alone: its
    confirmed state (a power operation's, a delivery's, an isolation's) is newer than this reading,
    and overwriting it would report drift that never happened, or a VM just delivered as missing.
    """
    assert conn.id is not None
    who = who or Who.system("inventory-sync")
    report = SyncReport(connection_id=conn.id, connection=conn.name)
    inventory = [vm for vm in listed if not vm.is_template]
    report.seen = len(inventory)
    now = db.utcnow()
    refs: list[str] | None = None
    if only is not None:
        refs = sorted(set(only) | {info.ref for info in inventory})
        if not refs:
            return report
    rows = {r.hypervisor_ref: r for r in repository.sync_rows(session, conn.id, refs)}
    newer: set[str] = set()
    if listed_at is not None:
        newer = {
            ref
            for ref, r in rows.items()
            if (r.synced_at is not None and r.synced_at >= listed_at) or r.created_at >= listed_at
        }
        if newer:
            log.info(
                "sync of connection %s: %d VMs changed during the listing, left as they are",
                conn.name,
                len(newer),
            )
    notes: list[Note] = []

    updates: list[dict[str, Any]] = []
    for info in inventory:
        row = rows.get(info.ref)
        if row is None or info.ref in newer:
            continue
        observed = _observed(info)
        changed = {k for k, v in observed.items() if getattr(row, k) != v}
        lifecycle = row.lifecycle
        if row.lifecycle == Lifecycle.MISSING:
            lifecycle = Lifecycle.ACTIVE
            report.reappeared.append(row.id)
        elif not changed:
            continue
        governed = row.registered and row.lifecycle != Lifecycle.DECOMMISSIONED
        if "power_state" in changed and governed:
            report.drift.append(
                {
                    "vm_id": row.id,
                    "name": row.name,
                    "portal": row.power_state,
                    "hypervisor": observed["power_state"],
                }
            )
            notes.append(
                Note(
                    "vm.power_drift",
                    "vm",
                    row.id,
                    {"power_state": row.power_state},
                    {"power_state": observed["power_state"]},
                    "power state corrected from the hypervisor's inventory",
                    row.unit_id,
                )
            )
        if "network_connected" in changed and governed:
            # A NIC reconnected (or cut) outside the portal: for a contained VM that is a security
            # matter, so it is kept in the audit log, not just overwritten.
            report.network_drift.append(
                {
                    "vm_id": row.id,
                    "name": row.name,
                    "portal": row.network_connected,
                    "hypervisor": observed["network_connected"],
                }
            )
            notes.append(
                Note(
                    "vm.network_drift",
                    "vm",
                    row.id,
                    {"network_connected": row.network_connected},
                    {"network_connected": observed["network_connected"]},
                    "NIC state corrected from the hypervisor's inventory",
                    row.unit_id,
                )
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
    report.updated = repository.guarded_update(session, updates)

    seen_refs = {info.ref for info in inventory}
    gone = [
        r
        for ref, r in rows.items()
        if ref not in seen_refs and ref not in newer and r.lifecycle == Lifecycle.ACTIVE
    ]
    repository.guarded_update(
        session,
        [
            {
                "b_id": r.id,
                "b_version": r.version,
                "version": r.version + 1,
                "lifecycle": Lifecycle.MISSING,
                "synced_at": now,
            }
            for r in gone
        ],
    )
    for r in gone:
        report.missing.append(r.id)
        notes.append(
            Note(
                "vm.missing",
                "vm",
                r.id,
                {"lifecycle": Lifecycle.ACTIVE},
                {"lifecycle": Lifecycle.MISSING},
                "the hypervisor no longer reports this VM",
                r.unit_id,
            )
        )

    new = _not_awaited(session, conn.id, [info for info in inventory if info.ref not in rows])
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
        report.unregistered = repository.insert_vm_rows(session, values)
        notes.append(
            Note(
                "inventory.unregistered_found",
                "connection",
                conn.id,
                None,
                {"count": len(new), "refs": [i.ref for i in new[:50]]},
                "VMs on the hypervisor that the portal does not govern",
            )
        )
    record_many(session, who, notes)
    if recheck:
        report.checked = sorted(int(r.id) for ref, r in rows.items() if ref in seen_refs)
    for hook in _ON_RECONCILED:
        hook(session, report)
    log.info(
        "sync of connection %s: %d seen, %d updated, %d drifted, %d missing, %d unregistered found",
        conn.name,
        report.seen,
        report.updated,
        len(report.drift) + len(report.network_drift),
        len(report.missing),
        len(report.unregistered),
    )
    return report


def move_refs(session: Session, connection_id: int, moved: dict[str, str]) -> int:
    """The same VMs under new refs (a Proxmox migration changes ``node/vmid``): their rows follow,
    rather than one being marked missing and the other found unregistered. A new ref that already
    has a row of its own is left alone (the full sync sorts that out). Returns rows moved."""
    taken = repository.refs_in_use(session, connection_id, list(moved.values()))
    count = 0
    for old, new in moved.items():
        if new not in taken:
            count += repository.move_ref(session, connection_id, old, new)
    return count


def sync_all(who: Who | None = None, connection_id: int | None = None) -> list[SyncReport]:
    """Every active connection, each in its own transaction: one unreachable host spoils nothing."""
    with db.transaction() as session:
        ids = repository.active_connection_ids(session, connection_id)
    reports = []
    for conn_id in ids:
        with db.transaction() as session:
            conn = session.get(HypervisorConnection, conn_id)
            if conn is not None:
                reports.append(sync_connection(session, conn, who))
    return reports


def unregistered(session: Session, connection_id: int | None = None) -> list[tuple[VM, str]]:
    """The VMs the inventory found that no unit owns (not decommissioned), with their connection's
    name, oldest first: what the center assigns (GET /inventory/unregistered, the /inventory page)."""
    return repository.unregistered_vms(session, connection_id)


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
