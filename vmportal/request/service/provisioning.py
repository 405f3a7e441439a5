"""Provisioning: an approved request becomes a VM on its hypervisor.

Provisioning (:mod:`vmportal.request.tasks`) runs in three short transactions around the hypervisor
call, so no database lock is held while the hypervisor works:

1. :func:`prepare_provisioning`: approved → provisioning (compare-and-set); take an address; create
   the VM row as a placeholder (lifecycle ``provisioning``, hidden from VM lists and power
   operations) together with its :class:`DeliveryCredential`, i.e. the generated password,
   encrypted. Persisting the password *before* the clone is what makes a retry safe: a task
   redelivered after a crash finds the placeholder, clones again with the same marker, the adapter
   returns the VM the first attempt made, and the password on file is the one that VM has.
2. ``adapter.clone(CloneSpec(marker="vmportal:request:<id>", …))``.
3. :func:`finish_provisioning` (the placeholder becomes the VM, the request delivered) or
   :func:`fail_provisioning` (the request failed with the adapter's message, the address released,
   the placeholder and its password removed).

The admin account: ``Administrator`` on Windows templates (Sysprep guest customization can only set
the built-in administrator's password), ``vmadmin`` everywhere else (cloud-init ``ciuser`` / Linux
customization creates it; a fixed non-``root`` name the unit can rename). The initial password: 20
characters from :mod:`secrets`, upper and lower case, digits and symbols, without look-alikes
(0/O/o, 1/l/I) and without characters that break shells, YAML or XML (quotes, ``$``, ``&``, ``<``,
``\\``). It is never logged or audited; it is erased when the unit's admin fetches it.
"""

from __future__ import annotations

import logging
import secrets
import string
from dataclasses import dataclass

from sqlmodel import Session

from hypervisors.base import CloneSpec, IPSettings, Retriable, VMInfo
from vmportal.audit.service import Who, record
from vmportal.connection.models import HypervisorConnection
from vmportal.kit.db import utcnow
from vmportal.network import service as network
from vmportal.network.models import IPPool
from vmportal.request import mails, repository
from vmportal.request.lifecycle import REQUEST, Action
from vmportal.request.models import RequestState, VMRequest
from vmportal.request.service.checks import find_connection, find_unit
from vmportal.request.service.decisions import deadline_of
from vmportal.unit.models import Unit
from vmportal.vm import repository as vm_repository
from vmportal.vm.models import VM, DeliveryCredential, Lifecycle

log = logging.getLogger(__name__)

#: Who the audit log names for what the provisioning task does.
PROVISIONER = Who.system("provisioning")

LINUX_ADMIN = "vmadmin"
WINDOWS_ADMIN = "Administrator"

PASSWORD_LENGTH = 20
_LOWER = "abcdefghijkmnpqrstuvwxyz"  # no l, o
_UPPER = "ABCDEFGHJKLMNPQRSTUVWXYZ"  # no I, O
_DIGITS = "23456789"  # no 0, 1
_SYMBOLS = "@%+=_-"  # safe unquoted in shells, YAML, XML and Sysprep answer files
_CLASSES = (_LOWER, _UPPER, _DIGITS, _SYMBOLS)


def generate_initial_password(length: int = PASSWORD_LENGTH) -> str:
    """A random password with every character class, starting with a letter (some tools read a
    leading symbol as an option)."""
    if length < 16:
        raise ValueError("initial passwords have at least 16 characters")
    alphabet = "".join(_CLASSES)
    rng = secrets.SystemRandom()
    while True:
        chars = [secrets.choice(c) for c in _CLASSES]
        chars += [secrets.choice(alphabet) for _ in range(length - len(chars))]
        rng.shuffle(chars)
        if chars[0] in string.ascii_letters:
            return "".join(chars)


def admin_account_for(template_name: str, template_ref: str) -> str:
    text = f"{template_name} {template_ref}".casefold()
    return WINDOWS_ADMIN if "windows" in text or "win20" in text else LINUX_ADMIN


def marker_of(request_id: int) -> str:
    return f"vmportal:request:{request_id}"


class ProvisioningFailed(Exception):
    """A failure no retry of the same task would cure (no pool, no free address, connection gone)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class ProvisionPlan:
    request_id: int
    vm_id: int
    connection: HypervisorConnection
    spec: CloneSpec
    fresh: bool = True  # the placeholder was created by this run (no earlier attempt's VM to resume)
    attempt: int = 1

    def __repr__(self) -> str:  # the spec carries the password: never let it reach a log line
        return f"ProvisionPlan(request_id={self.request_id}, vm_id={self.vm_id}, attempt={self.attempt})"


def _pool_for_provisioning(session: Session, req: VMRequest) -> IPPool:
    if req.pool_id is not None:
        pool = network.find_pool(session, req.pool_id)
        if pool is not None:
            return pool
    pool = network.default_pool(session, req.connection_id)
    if pool is None:
        raise ProvisioningFailed(
            f"no IP pool for hypervisor connection {req.connection_id}: create one bound to the "
            "connection, or approve the request with a pool"
        )
    return pool


def _vm_name(req: VMRequest, unit: Unit | None) -> str:
    prefix = (unit.code if unit is not None else f"unit{req.unit_id}").lower()
    return f"{prefix}-{req.hostname}-{req.id}"[:80]


def prepare_provisioning(session: Session, request_id: int) -> ProvisionPlan | None:
    """Step 1. None when there is nothing to do (delivered already, or not approved)."""
    req = repository.get(session, request_id)
    if req is None:
        log.warning("provisioning: request %s does not exist", request_id)
        return None
    if req.state == RequestState.APPROVED:
        REQUEST.move(session, req, Action.START, provisioning_attempts=req.provisioning_attempts + 1)
        record(
            session,
            PROVISIONER,
            "request.provision",
            "vm_request",
            req.id,
            before={"state": RequestState.APPROVED.value},
            after={"state": req.state, "attempt": req.provisioning_attempts},
            unit_id=req.unit_id,
        )
    elif req.state != RequestState.PROVISIONING:
        log.info("provisioning: request %s is %s, nothing to do", request_id, req.state)
        return None

    conn = find_connection(session, req.connection_id)
    if conn is None or not conn.active:
        raise ProvisioningFailed(f"hypervisor connection {req.connection_id} is not in service")

    existing = vm_repository.placeholders(session, request_id)
    if existing:
        vm = existing[0]
        assert vm.id is not None
        credential = vm_repository.credential(session, vm.id)
        allocation = network.live_allocation_for_vm(session, vm.id)
        pool = network.find_pool(session, allocation.pool_id) if allocation is not None else None
        if credential is None or not credential.password or allocation is None or pool is None:
            raise ProvisioningFailed(
                f"the provisioning record of VM {vm.id} is incomplete; retry the request"
            )
        fresh = False
    else:
        pool = _pool_for_provisioning(session, req)
        try:
            allocation = network.allocate(session, pool, request_id=req.id)
        except network.PoolExhausted as exc:
            raise ProvisioningFailed(exc.message) from exc
        except network.AllocationContended as exc:
            # Concurrent deliveries took every address tried: the transaction rolls back and the
            # task runs again a moment later, when they have committed.
            raise Retriable(exc.message, defer=1.0) from exc
        account = admin_account_for(req.template_name, req.template_ref)
        vm = VM(
            unit_id=req.unit_id,
            system_id=req.system_id,
            request_id=req.id,
            connection_id=conn.id or 0,
            hypervisor_ref=f"pending:{marker_of(request_id)}",
            name=_vm_name(req, find_unit(session, req.unit_id)),
            hostname=req.hostname,
            template_name=req.template_name,
            vcpus=req.vcpus,
            memory_gib=req.memory_gib,
            disk_gib=req.disk_gib,
            ip_address=allocation.address,
            ips=[allocation.address],
            admin_account=account,
            power_state="unknown",
            lifecycle=Lifecycle.PROVISIONING,
        )
        session.add(vm)
        session.flush()
        assert vm.id is not None
        allocation.vm_id = vm.id
        session.add(allocation)
        credential = DeliveryCredential(vm_id=vm.id, account=account, password=generate_initial_password())
        session.add(credential)
        session.flush()
        fresh = True

    assert vm.id is not None and credential.password is not None
    net = network.parse_cidr(pool.cidr)
    spec = CloneSpec(
        name=vm.name,
        template_ref=req.template_ref,
        marker=marker_of(request_id),
        vcpus=req.vcpus,
        memory_mib=req.memory_gib * 1024,
        disk_gib=req.disk_gib,
        network=pool.network or None,
        ip=IPSettings(
            address=allocation.address,
            prefix_length=net.prefixlen,
            gateway=pool.gateway,
            dns=tuple(pool.dns or ()),
        ),
        hostname=req.hostname,
        admin_user=credential.account,
        admin_password=credential.password,
        power_on=True,
    )
    return ProvisionPlan(
        request_id=request_id,
        vm_id=vm.id,
        connection=conn,
        spec=spec,
        fresh=fresh,
        attempt=req.provisioning_attempts,
    )


def finish_provisioning(session: Session, request_id: int, vm_id: int, info: VMInfo) -> bool:
    """Step 3 on success: the placeholder becomes the VM, the request is delivered. False when
    another delivery of the task got there first."""
    req = repository.get(session, request_id)
    vm = vm_repository.get(session, vm_id)
    if (
        req is None
        or vm is None
        or req.state != RequestState.PROVISIONING
        or vm.lifecycle != Lifecycle.PROVISIONING
    ):
        log.info("provisioning of request %s already concluded", request_id)
        return False
    # An inventory sync between the clone and now records the new VM as unregistered; that row is
    # this VM seen too early. Remove it so the placeholder can take the hypervisor's reference.
    duplicate = vm_repository.by_ref(session, vm.connection_id, info.ref, other_than=vm_id)
    if duplicate is not None:
        if duplicate.registered or duplicate.unit_id is not None:
            raise RuntimeError(
                f"hypervisor VM {info.ref} made for request {request_id} is already VM {duplicate.id}"
            )
        session.delete(duplicate)
        session.flush()
    now = utcnow()
    vm.hypervisor_ref = info.ref
    vm.name = info.name[:200]
    vm.power_state = str(info.power_state)
    vm.ips = list(info.ips) or list(vm.ips or [])
    vm.macs = [n.mac for n in info.nics if n.mac]
    vm.network_connected = info.network_connected if info.nics else True
    vm.lifecycle = Lifecycle.ACTIVE
    vm.created_at = now
    vm.synced_at = now
    session.add(vm)
    session.flush()
    REQUEST.move(session, req, Action.DELIVER, delivered_at=now, vm_id=vm.id, failure_reason="")
    delivered = {
        "state": req.state,
        "vm_id": vm.id,
        "hypervisor_ref": vm.hypervisor_ref,
        "ip_address": vm.ip_address,
        "admin_account": vm.admin_account,
        "deadline": str(deadline_of(req, now)),
    }
    record(
        session,
        PROVISIONER,
        "request.deliver",
        "vm_request",
        req.id,
        before={"state": RequestState.PROVISIONING.value},
        after=delivered,
        unit_id=req.unit_id,
    )
    record(
        session,
        PROVISIONER,
        "vm.create",
        "vm",
        vm.id,
        after={
            "name": vm.name,
            "hostname": vm.hostname,
            "request_id": req.id,
            "connection_id": vm.connection_id,
            "hypervisor_ref": vm.hypervisor_ref,
            "ip_address": vm.ip_address,
            "vcpus": vm.vcpus,
            "memory_gib": vm.memory_gib,
            "disk_gib": vm.disk_gib,
            "power_state": vm.power_state,
        },
        unit_id=vm.unit_id,
    )
    mails.after_move(session, req)
    return True


def fail_provisioning(session: Session, request_id: int, message: str) -> bool:
    """Step 3 on failure: failed with the message; address released; placeholder and password gone."""
    req = repository.get(session, request_id)
    if req is None or req.state not in REQUEST.sources(Action.FAIL):
        return False
    released = network.release_for_request(session, request_id)
    for vm in vm_repository.placeholders(session, request_id):
        assert vm.id is not None
        network.forget_vm(session, vm.id)
        credential = vm_repository.credential(session, vm.id)
        if credential is not None:
            session.delete(credential)
        session.flush()
        session.delete(vm)
    session.flush()
    before = req.state
    REQUEST.move(session, req, Action.FAIL, failure_reason=message[:2000])
    record(
        session,
        PROVISIONER,
        "request.fail",
        "vm_request",
        req.id,
        before={"state": before},
        after={"state": req.state, "released_addresses": released},
        result="failed",
        detail=message,
        unit_id=req.unit_id,
    )
    mails.after_move(session, req)
    return True
