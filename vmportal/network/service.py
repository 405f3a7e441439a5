"""IP pools: validation, counts, and handing addresses out and back.

Which address a delivery gets
-----------------------------
The lowest address of the pool that was never handed out; once every address has been used, the
one released longest ago. Re-using a just-released address would let an alert, a firewall rule or
a DNS record about the previous VM land on the new one (alerts are matched to VMs by address), so
recently released addresses go last. Never handed out: the network and broadcast addresses, the
gateway, and the pool's exclusions (single addresses or ranges ``a-b``).

The database has the last word: the partial unique index ``uq_ip_allocation_live_address`` refuses
a second live allocation of an address in any pool, whatever this code does. Two allocators racing
on PostgreSQL may pick the same address; the loser's insert fails inside a savepoint and it takes
the next candidate (after :data:`MAX_ALLOCATION_RACES` lost races in one call it gives up with a 409
``allocation_contended``, worth a retry). On SQLite writers are serialised by ``BEGIN IMMEDIATE``,
so the race cannot happen there.

One address space
-----------------
Pools may not overlap, whichever hypervisor connection or port group they are bound to: the
portal's pools are one address space. The portal cannot tell whether a vSphere port group and a
Proxmox bridge are the same VLAN, a pool bound to no connection serves requests on any of them,
and alerts, scans and the inventory find a VM by its address alone; an address held by two live
VMs is wrong everywhere. Creating a pool, or changing a pool's CIDR, that overlaps another is a
422 on ``cidr`` (rule ``no_overlap``) naming the other pool. The check and the insert are one step:
on PostgreSQL the writer first locks the ``ip_pool`` table against other writers (``SHARE ROW
EXCLUSIVE``: reads and allocations go on), so two overlapping pools created at the same moment
cannot both pass; on SQLite ``BEGIN IMMEDIATE`` already serialises writers. Pools that overlapped
before this rule (an older database) stay usable: the allocator skips every live address of any
pool, and the unique index holds whatever happens.

A pool may be bound to a hypervisor connection: the connection's *default pool* is the bound pool
with the lowest id, used by a request that names no pool.

Deleting a pool
---------------
A pool in use (live addresses) is never deleted. Domains above this one that name pools (VM
requests) take part through *pool guards* they register at import (:func:`register_pool_guard`):
each may refuse the deletion with a 409 or let go of the pool (unlink its closed records), in the
deleting transaction. This package knows none of them, so the arrow between the two stays downward.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from vmportal.audit.service import Who, record
from vmportal.connection.service import get_connection
from vmportal.kit import errors
from vmportal.network import repository
from vmportal.network.models import IPAllocation, IPPool

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: A pool is walked address by address; 65,536 (an IPv4 /16) keeps that a few milliseconds.
MAX_POOL_ADDRESSES = 1 << 16
#: Give up after this many addresses were taken under our feet by concurrent allocators.
MAX_ALLOCATION_RACES = 100

#: Called before a pool is deleted, in the deleting transaction: raise (a 409) to refuse, or let go
#: of the pool (records of the caller's domain that name it). See "Deleting a pool" above.
PoolGuard = Callable[[Session, IPPool], None]
_pool_guards: list[PoolGuard] = []


def register_pool_guard(guard: PoolGuard) -> None:
    """Take part in every pool deletion (idempotent: a module imported twice registers once)."""
    if guard not in _pool_guards:
        _pool_guards.append(guard)


class AllocationContended(errors.Conflict):
    """409: concurrent allocators took every address this one tried; trying again will succeed."""

    code = "allocation_contended"

    def __init__(self, pool: IPPool) -> None:
        super().__init__(
            f"IP pool '{pool.name}': {MAX_ALLOCATION_RACES} addresses in a row were taken by concurrent "
            "deliveries; try again",
            message_zh=f"地址池“{pool.name}”：连续 {MAX_ALLOCATION_RACES} 个地址被同时进行的交付占用，请重试",
            pool_id=pool.id,
        )


class PoolExhausted(Exception):
    """No address of the pool can be handed out."""

    def __init__(self, pool: IPPool) -> None:
        super().__init__(f"IP pool '{pool.name}' ({pool.cidr}) has no free address")
        self.message = str(self)
        self.message_zh = f"IP 地址池“{pool.name}”（{pool.cidr}）已无可分配的地址"


# ---- parsing and validation --------------------------------------------------------------------


def parse_cidr(value: str, field: str = "cidr") -> IPNetwork:
    try:
        net = ipaddress.ip_network(value.strip(), strict=True)
    except ValueError as exc:
        raise errors.InvalidField(
            field,
            "cidr",
            f"'{value}' is not a network in CIDR notation with its host bits clear ({exc})",
            message_zh=f"“{value}”不是合法的网段（CIDR 表示，主机位须为 0，如 10.20.0.0/24）",
        ) from None
    if net.num_addresses > MAX_POOL_ADDRESSES:
        raise errors.InvalidField(
            field,
            "max_size",
            f"a pool may hold at most {MAX_POOL_ADDRESSES} addresses (an IPv4 /16); split larger networks",
            message_zh=f"一个地址池最多 {MAX_POOL_ADDRESSES} 个地址（IPv4 /16），更大的网段请拆分",
        )
    return net


def _parse_address(value: str, field: str) -> IPAddress:
    try:
        return ipaddress.ip_address(value.strip())
    except ValueError:
        raise errors.InvalidField(
            field, "ip_address", f"'{value}' is not an IP address", message_zh=f"“{value}”不是合法的 IP 地址"
        ) from None


def _host_bounds(net: IPNetwork) -> tuple[int, int]:
    """First and last address a host may have: not the network or broadcast address (IPv4 /31
    and /32 have none to spare, RFC 3021); IPv6 skips the subnet-router anycast address."""
    first, last = int(net.network_address), int(net.broadcast_address)
    if net.version == 4 and net.prefixlen < 31:
        return first + 1, last - 1
    if net.version == 6 and net.prefixlen < 127:
        return first + 1, last
    return first, last


def _inside(net: IPNetwork, address: IPAddress, field: str, value: str) -> int:
    if address.version != net.version or address not in net:
        raise errors.InvalidField(
            field,
            "inside_cidr",
            f"'{value}' is not inside {net}",
            message_zh=f"“{value}”不在网段 {net} 之内",
        )
    return int(address)


def parse_excluded(entries: list[str], net: IPNetwork, field: str = "excluded") -> list[tuple[int, int]]:
    """Each entry an address or a range ``a-b`` (a ≤ b), inside the network."""
    ranges = []
    for i, entry in enumerate(entries):
        where = f"{field}.{i}"
        lo_text, sep, hi_text = entry.partition("-")
        lo = _inside(net, _parse_address(lo_text, where), where, entry)
        hi = _inside(net, _parse_address(hi_text, where), where, entry) if sep else lo
        if hi < lo:
            raise errors.InvalidField(
                where,
                "range_order",
                f"range '{entry}' ends before it starts",
                message_zh=f"地址范围“{entry}”的结束地址小于起始地址",
            )
        ranges.append((lo, hi))
    return ranges


@dataclass(frozen=True)
class Layout:
    """Which addresses of a pool may ever be handed out."""

    net: IPNetwork
    gateway: int | None
    excluded: frozenset[int]

    @property
    def bounds(self) -> tuple[int, int]:
        return _host_bounds(self.net)

    def usable(self, value: int) -> bool:
        lo, hi = self.bounds
        return lo <= value <= hi and value != self.gateway and value not in self.excluded

    def addresses(self) -> Iterator[int]:
        lo, hi = self.bounds
        for value in range(lo, hi + 1):
            if value != self.gateway and value not in self.excluded:
                yield value

    def size(self) -> int:
        lo, hi = self.bounds
        taken = {v for v in self.excluded if lo <= v <= hi}
        if self.gateway is not None and lo <= self.gateway <= hi:
            taken.add(self.gateway)
        return hi - lo + 1 - len(taken)

    def text(self, value: int) -> str:
        return str(ipaddress.ip_address(value))


def _expand(ranges: list[tuple[int, int]]) -> frozenset[int]:
    return frozenset(v for lo, hi in ranges for v in range(lo, hi + 1))


def layout_of(pool: IPPool) -> Layout:
    net = parse_cidr(pool.cidr)
    gateway = int(ipaddress.ip_address(pool.gateway)) if pool.gateway else None
    return Layout(net, gateway, _expand(parse_excluded(list(pool.excluded or []), net)))


@dataclass(frozen=True)
class PoolSpec:
    """A pool's validated, normalised definition."""

    cidr: str
    gateway: str
    dns: list[str]
    excluded: list[str]


def validate(cidr: str, gateway: str, dns: list[str], excluded: list[str]) -> PoolSpec:
    net = parse_cidr(cidr)
    gw = _parse_address(gateway, "gateway")
    _inside(net, gw, "gateway", gateway)
    lo, hi = _host_bounds(net)
    if not lo <= int(gw) <= hi:
        raise errors.InvalidField(
            "gateway",
            "host_address",
            f"'{gateway}' is the network or broadcast address of {net}",
            message_zh=f"“{gateway}”是网段 {net} 的网络地址或广播地址，不能作网关",
        )
    dns_norm = [str(_parse_address(d, f"dns.{i}")) for i, d in enumerate(dns)]
    ranges = parse_excluded(excluded, net)
    excluded_norm = [
        str(ipaddress.ip_address(a)) if a == b else f"{ipaddress.ip_address(a)}-{ipaddress.ip_address(b)}"
        for a, b in ranges
    ]
    return PoolSpec(cidr=str(net), gateway=str(gw), dns=dns_norm, excluded=excluded_norm)


# ---- reading -----------------------------------------------------------------------------------


def get_pool(session: Session, pool_id: int) -> IPPool:
    pool = repository.get_pool(session, pool_id)
    if pool is None:
        raise errors.NotFound("ip pool", pool_id)
    return pool


def find_pool(session: Session, pool_id: int) -> IPPool | None:
    return repository.get_pool(session, pool_id)


def list_pools(session: Session, connection_id: int | None = None) -> list[IPPool]:
    return repository.list_pools(session, connection_id)


def default_pool(session: Session, connection_id: int) -> IPPool | None:
    """The pool a request on this connection gets when it names none: the lowest-id bound pool."""
    return repository.first_pool_of(session, connection_id)


def _live_addresses(session: Session, pool_id: int) -> set[int]:
    return {int(ipaddress.ip_address(a)) for a in repository.live_addresses(session, pool_id)}


def live_count(session: Session, pool_id: int) -> int:
    return repository.live_count(session, pool_id)


@dataclass(frozen=True)
class Counts:
    size: int
    used: int
    free: int


def counts(session: Session, pool: IPPool) -> Counts:
    assert pool.id is not None
    layout = layout_of(pool)
    live = _live_addresses(session, pool.id)
    free = layout.size() - sum(1 for a in live if layout.usable(a))
    return Counts(size=layout.size(), used=len(live), free=max(free, 0))


def live_allocation_for_request(session: Session, request_id: int) -> IPAllocation | None:
    return repository.live_allocation_for_request(session, request_id)


def live_allocation_for_vm(session: Session, vm_id: int) -> IPAllocation | None:
    return repository.live_allocation_for_vm(session, vm_id)


def allocations(
    session: Session, pool_id: int, *, released: bool, limit: int, offset: int
) -> list[IPAllocation]:
    """The pool's allocations, oldest first: the live ones, or its whole history with ``released``.
    404 for a pool that does not exist."""
    get_pool(session, pool_id)
    return repository.allocations(session, pool_id, released=released, limit=limit, offset=offset)


# ---- handing out and back ----------------------------------------------------------------------


def _candidates(session: Session, pool: IPPool, layout: Layout) -> Iterator[int]:
    assert pool.id is not None
    # Every live address of the network, whichever pool holds it (an older database may still have
    # overlapping pools): the unique index is per address, not per pool.
    live = {
        int(address)
        for address in map(ipaddress.ip_address, repository.all_live_addresses(session))
        if address in layout.net
    }
    last_released: dict[int, datetime | None] = {}
    for address, released_at in repository.last_released(session, pool.id):
        last_released[int(ipaddress.ip_address(address))] = released_at
    for value in layout.addresses():
        if value not in live and value not in last_released:
            yield value
    for value, _ in sorted(last_released.items(), key=lambda item: (str(item[1]), item[0])):
        if value not in live and layout.usable(value):
            yield value


def allocate(
    session: Session, pool: IPPool, *, request_id: int | None, vm_id: int | None = None
) -> IPAllocation:
    """Give one address of ``pool`` to a request (or VM). A request keeps the live allocation it
    already has, so a retried provisioning never takes a second address."""
    assert pool.id is not None
    if request_id is not None:
        existing = live_allocation_for_request(session, request_id)
        if existing is not None:
            return existing
    layout = layout_of(pool)
    races = 0
    for value in _candidates(session, pool, layout):
        row = IPAllocation(pool_id=pool.id, address=layout.text(value), request_id=request_id, vm_id=vm_id)
        try:
            with session.begin_nested():
                session.add(row)
                session.flush()
        except IntegrityError:
            # Another transaction took this address first; the savepoint undid only our insert.
            races += 1
            if races >= MAX_ALLOCATION_RACES:
                raise AllocationContended(pool) from None
            continue
        return row
    raise PoolExhausted(pool)


def release_for_vm(session: Session, vm_id: int) -> int:
    """Give back the addresses of a VM (decommission). Returns how many were live."""
    return repository.release(session, IPAllocation.vm_id == vm_id)


def release_for_request(session: Session, request_id: int) -> int:
    """Give back the address a request holds (failed provisioning). Returns how many were live."""
    return repository.release(session, IPAllocation.request_id == request_id)


def forget_vm(session: Session, vm_id: int) -> None:
    """Detach the allocations from a VM row about to be removed (a failed delivery's placeholder);
    they stay with their request."""
    repository.unlink_vm(session, vm_id)


# ---- the center's pool administration ----------------------------------------------------------


def snapshot(pool: IPPool) -> dict[str, Any]:
    return {
        "name": pool.name,
        "cidr": pool.cidr,
        "gateway": pool.gateway,
        "dns": list(pool.dns or []),
        "excluded": list(pool.excluded or []),
        "network": pool.network,
        "connection_id": pool.connection_id,
    }


def _check_connection(session: Session, connection_id: int | None) -> None:
    if connection_id is None:
        return
    try:
        get_connection(session, connection_id)
    except errors.NotFound:
        raise errors.InvalidField(
            "connection_id",
            "exists",
            f"hypervisor connection {connection_id} does not exist",
            message_zh=f"虚拟化平台连接 {connection_id} 不存在",
        ) from None


def _check_name(session: Session, name: str, pool_id: int | None = None) -> None:
    if repository.name_taken(session, name, other_than=pool_id):
        raise errors.Conflict(
            f"an IP pool named '{name}' exists already", message_zh=f"地址池“{name}”已存在", field="name"
        )


def _check_overlap(session: Session, cidr: str, pool_id: int | None = None) -> None:
    """422 on ``cidr`` when another pool's network overlaps ``cidr`` (see "One address space").
    Called after :func:`repository.lock_pools`, in the transaction that writes the pool."""
    net = parse_cidr(cidr)
    for other in repository.list_pools(session):
        if other.id == pool_id:
            continue
        try:
            other_net = ipaddress.ip_network(other.cidr, strict=False)
        except ValueError:  # not written by this service; nothing to compare
            continue
        if not net.overlaps(other_net):
            continue
        error = errors.InvalidField(
            "cidr",
            "no_overlap",
            f"{net} overlaps IP pool {other.id} '{other.name}' ({other_net}); "
            "pools may not overlap, or an address could be handed out twice",
            message_zh=f"{net} 与 IP 地址池 {other.id}“{other.name}”（{other_net}）重叠；"
            "地址池之间不得重叠，否则同一地址可能分配两次",
        )
        other_pool = {"id": other.id, "name": other.name, "cidr": other.cidr}
        error.extra["fields"][0]["other_pool"] = other_pool
        error.extra["other_pool"] = other_pool
        raise error


def create_pool(
    session: Session,
    who: Who,
    *,
    name: str,
    cidr: str,
    gateway: str,
    dns: list[str],
    excluded: list[str],
    network: str = "",
    connection_id: int | None = None,
) -> IPPool:
    spec = validate(cidr, gateway, dns, excluded)
    _check_connection(session, connection_id)
    repository.lock_pools(session)
    _check_name(session, name.strip())
    _check_overlap(session, spec.cidr)
    pool = IPPool(
        name=name.strip(),
        cidr=spec.cidr,
        gateway=spec.gateway,
        dns=spec.dns,
        excluded=spec.excluded,
        network=network.strip(),
        connection_id=connection_id,
    )
    session.add(pool)
    session.flush()
    record(session, who, "pool.create", "ip_pool", pool.id, after=snapshot(pool))
    return pool


def update_pool(session: Session, who: Who, pool: IPPool, changes: dict[str, Any]) -> IPPool:
    """Apply the given fields. A CIDR change needs an empty pool (a live address outside the new
    network would be orphaned); the new gateway must not be an address given to a VM."""
    assert pool.id is not None
    before = snapshot(pool)
    merged = {**before, **{k: v for k, v in changes.items() if v is not None or k == "connection_id"}}
    spec = validate(merged["cidr"], merged["gateway"], merged["dns"], merged["excluded"])
    live = _live_addresses(session, pool.id)
    if spec.cidr != pool.cidr and live:
        raise errors.Conflict(
            f"pool '{pool.name}' has {len(live)} address(es) in use; "
            "its CIDR cannot change until they are released",
            message_zh=f"地址池“{pool.name}”有 {len(live)} 个地址正在使用，释放前不能修改网段",
            field="cidr",
        )
    if int(ipaddress.ip_address(spec.gateway)) in live:
        raise errors.Conflict(
            f"{spec.gateway} is given to a VM and cannot become the gateway",
            message_zh=f"{spec.gateway} 已分配给虚拟机，不能作为网关",
            field="gateway",
        )
    if "connection_id" in changes:
        _check_connection(session, changes["connection_id"])
    if spec.cidr != pool.cidr:
        repository.lock_pools(session)
        _check_overlap(session, spec.cidr, pool.id)
    name = str(merged["name"]).strip()
    _check_name(session, name, pool.id)
    pool.name, pool.cidr, pool.gateway = name, spec.cidr, spec.gateway
    pool.dns, pool.excluded = spec.dns, spec.excluded
    pool.network = str(merged["network"] or "").strip()
    pool.connection_id = merged["connection_id"]
    after = snapshot(pool)
    if after != before:
        session.add(pool)
        record(session, who, "pool.update", "ip_pool", pool.id, before=before, after=after)
    return pool


def delete_pool(session: Session, who: Who, pool: IPPool) -> None:
    """Remove a pool nobody uses. Live addresses on it answer 409, and so does any pool guard (open
    requests naming it). The released allocations go with it (the VMs and the audit log keep which
    address each VM had); what the guards let go of (closed requests) keeps its record without it."""
    assert pool.id is not None
    live = live_count(session, pool.id)
    if live:
        raise errors.Conflict(
            f"pool '{pool.name}' has {live} address(es) in use; release them (decommission the VMs) first",
            message_zh=f"地址池“{pool.name}”有 {live} 个地址正在使用，须先释放（下线虚拟机）",
            live_allocations=live,
        )
    for guard in _pool_guards:
        guard(session, pool)
    released = repository.delete_allocations(session, pool.id)
    before = snapshot(pool)
    session.delete(pool)
    session.flush()
    record(
        session,
        who,
        "pool.delete",
        "ip_pool",
        pool.id,
        before=before,
        detail=f"{released} released allocation record(s) removed with the pool",
    )
