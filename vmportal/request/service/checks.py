"""Checks shared by submission and the center's decisions: the connection and pool a request names,
who may take an action, and the quota facts (the unit's outstanding requests counted here, since
the quota domain below does not read requests)."""

from __future__ import annotations

from collections.abc import Iterable

from sqlmodel import Session

from policies.quota import QuotaFacts, Resources
from policies.roles import ROLE_NAMES_EN, ROLE_NAMES_ZH, Actor
from vmportal.connection import service as connections
from vmportal.connection.models import HypervisorConnection
from vmportal.kit import errors
from vmportal.network import service as network
from vmportal.network.models import IPPool
from vmportal.quota import service as quota
from vmportal.request import repository
from vmportal.request.lifecycle import REQUEST, Action
from vmportal.request.models import VMRequest
from vmportal.unit import service as units
from vmportal.unit.models import Unit


def invalid(field: str, rule: str, message: str, message_zh: str) -> errors.InvalidField:
    return errors.InvalidField(field, rule, message, message_zh=message_zh)


def authorize(actor: Actor, action: Action) -> None:
    """403 unless the lifecycle table lets ``actor``'s role ask for ``action`` (the one place roles
    are checked for requests)."""
    if REQUEST.may(actor.role, action):
        return
    roles = sorted(REQUEST.transition(action).roles)
    allowed = ", ".join(r.value for r in roles) or "nobody"
    allowed_zh = "、".join(ROLE_NAMES_ZH[r] for r in roles) or "无"
    action_zh = REQUEST.action_zh.get(action, action.value)
    raise errors.Forbidden(
        f"a {ROLE_NAMES_EN[actor.role]} may not {action.value} a request (allowed: {allowed})",
        message_zh=f"{ROLE_NAMES_ZH[actor.role]}无权对申请执行“{action_zh}”（允许：{allowed_zh}）",
        role=actor.role.value,
        action=action.value,
    )


def connection_for(session: Session, connection_id: int) -> HypervisorConnection:
    """The connection a request names: 422 when it does not exist or is out of service."""
    conn = find_connection(session, connection_id)
    if conn is None:
        raise invalid(
            "connection_id",
            "exists",
            f"hypervisor connection {connection_id} does not exist",
            f"虚拟化平台连接 {connection_id} 不存在",
        )
    if not conn.active:
        raise invalid(
            "connection_id",
            "active",
            f"hypervisor connection '{conn.name}' is not in service",
            f"虚拟化平台连接“{conn.name}”已停用",
        )
    return conn


def find_connection(session: Session, connection_id: int) -> HypervisorConnection | None:
    try:
        return connections.get_connection(session, connection_id)
    except errors.NotFound:
        return None


def find_unit(session: Session, unit_id: int) -> Unit | None:
    try:
        return units.get_unit(session, unit_id)
    except errors.NotFound:
        return None


def pool_for_request(session: Session, pool_id: int, connection_id: int) -> IPPool:
    """The pool a request names: 422 when it does not exist or serves another connection."""
    pool = network.find_pool(session, pool_id)
    if pool is None:
        raise invalid("pool_id", "exists", f"IP pool {pool_id} does not exist", f"IP 地址池 {pool_id} 不存在")
    if pool.connection_id not in (None, connection_id):
        raise invalid(
            "pool_id",
            "same_connection",
            f"IP pool '{pool.name}' belongs to another hypervisor connection",
            f"IP 地址池“{pool.name}”属于其他虚拟化平台连接",
        )
    return pool


def requested_of(req: VMRequest) -> Resources:
    return Resources(vms=1, vcpus=req.vcpus, memory_gib=req.memory_gib, disk_gib=req.disk_gib)


def quota_facts(
    session: Session,
    unit_id: int,
    requested: Resources,
    states: Iterable[str],
    *,
    exclude: int | None = None,
) -> QuotaFacts:
    """Lock the unit's quota, then count: its VMs, its requests in ``states`` (but ``exclude``) and
    what is asked now. The lock comes first, so two decisions for one unit count one after the
    other."""
    quota.lock(session, unit_id)
    pending = Resources(*repository.totals_of_unit(session, unit_id, states, exclude=exclude))
    return quota.facts(session, unit_id, requested, pending=pending)
