"""Every query of alert intake: sources, storing a post, processing, reading and housekeeping.

``ingest``, ``sources`` and ``unmatched`` ask these functions; they run no statement of their own."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import delete, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import Session, col, func, select

from vmportal.incidents.models import (
    AlertRecord,
    AlertSource,
    AlertState,
    AlertWebhookId,
    Incident,
    SecurityAlert,
)
from vmportal.kit.sql import insert_or_nothing, insert_values_or_nothing
from vmportal.unit.models import InformationSystem
from vmportal.vm.models import VM, Lifecycle


def unmatched_between(
    session: Session, start: datetime, end: datetime, *, limit: int
) -> tuple[list[tuple[SecurityAlert, str]], int]:
    """Alerts found unmatched in ``[start, end)`` (oldest first, at most ``limit``, with their
    source's name) and how many there were in all."""
    where = (
        col(SecurityAlert.state) == AlertState.UNMATCHED.value,
        col(SecurityAlert.processed_at) >= start,
        col(SecurityAlert.processed_at) < end,
    )
    total = int(session.exec(select(func.count()).select_from(SecurityAlert).where(*where)).one())
    if not total:
        return [], 0
    rows = session.exec(
        select(SecurityAlert, AlertSource.name)
        .join(AlertSource, col(AlertSource.id) == col(SecurityAlert.source_id))
        .where(*where)
        .order_by(col(SecurityAlert.processed_at), col(SecurityAlert.id))
        .limit(limit)
    ).all()
    return [(alert, str(name)) for alert, name in rows], total


def _json_list_has_any(column: Any, values: list[str], dialect: str) -> ColumnElement[bool]:
    """Whether the JSON list in ``column`` holds any of ``values``. PostgreSQL answers from the GIN
    index on ``column::jsonb`` (migration 0012) with ``?|``; SQLite (the embedded default, small
    inventories) reads each row's list with ``json_each`` in C."""
    if dialect == "postgresql":
        return sa.cast(column, JSONB).has_any(postgresql.array(values))
    items = sa.func.json_each(column).table_valued("value").alias("items")
    return sa.select(sa.literal(1)).select_from(items).where(items.c.value.in_(values)).exists()


def vms_holding(
    session: Session, addresses: list[str]
) -> list[tuple[int, str | None, list[str], int | None]]:
    """Active VMs whose delivered address or inventory addresses include any of ``addresses``:
    (id, ip_address, ips, system_id). Every holder of each address is returned, so the caller can
    still tell an address two VMs claim (ambiguous) from one that is a single VM's.

    The whole rows are read (an alert's addresses are held by a VM or two) and kept for the session
    (its identity map holds objects only weakly): the VM an alert is then matched to is in the
    session already, and :func:`get_vm` finds it without a statement."""
    if not addresses:
        return []
    dialect = session.get_bind().dialect.name
    vms = session.exec(
        select(VM).where(
            col(VM.lifecycle) == Lifecycle.ACTIVE.value,
            sa.or_(col(VM.ip_address).in_(addresses), _json_list_has_any(VM.ips, addresses, dialect)),
        )
    ).all()
    session.info.setdefault(_HOLDERS_KEY, []).extend(vms)
    return [(int(vm.id), vm.ip_address, list(vm.ips or []), vm.system_id) for vm in vms if vm.id is not None]


#: Where :func:`vms_holding` keeps the VMs it read, for the rest of the session.
_HOLDERS_KEY = "vmportal_alerts_vms_holding"


def systems_with_domains(session: Session, hosts: list[str]) -> list[tuple[int, list[str]]]:
    """Information systems whose domains include any of ``hosts``: (id, domains)."""
    if not hosts:
        return []
    dialect = session.get_bind().dialect.name
    rows = session.exec(
        select(InformationSystem.id, InformationSystem.domains).where(
            _json_list_has_any(InformationSystem.domains, hosts, dialect)
        )
    ).all()
    return [(int(i), list(domains or [])) for i, domains in rows if i is not None]


def active_vms_of_systems(
    session: Session, system_ids: list[int]
) -> list[tuple[int, str | None, list[str], int | None]]:
    """The active VMs of these information systems: (id, ip_address, ips, system_id)."""
    if not system_ids:
        return []
    rows = session.exec(
        select(VM.id, VM.ip_address, VM.ips, VM.system_id).where(
            col(VM.lifecycle) == Lifecycle.ACTIVE.value, col(VM.system_id).in_(system_ids)
        )
    ).all()
    return [(int(i), ip, list(ips or []), system) for i, ip, ips, system in rows if i is not None]


# ---- alert sources ------------------------------------------------------------------------------------


def source_named(session: Session, name: str) -> AlertSource | None:
    """The alert source of this name, if there is one."""
    return session.exec(select(AlertSource).where(col(AlertSource.name) == name)).first()


def source_name_taken(session: Session, name: str) -> bool:
    """Whether an alert source of this name exists already."""
    return session.exec(select(AlertSource.id).where(col(AlertSource.name) == name)).first() is not None


def get_source(session: Session, source_id: int) -> AlertSource | None:
    """The alert source of this id, if there is one."""
    return session.get(AlertSource, source_id)


def sources_by_name(session: Session, *, active: bool | None = None) -> list[AlertSource]:
    """Every alert source (only the active or only the inactive ones when ``active`` is given), by name."""
    stmt = select(AlertSource).order_by(col(AlertSource.name))
    if active is not None:
        stmt = stmt.where(col(AlertSource.active) == active)
    return list(session.exec(stmt).all())


def record_count_of_source(session: Session, source_id: int | None) -> int:
    """How many alert records this source has posted."""
    return int(
        session.exec(
            select(func.count()).select_from(AlertRecord).where(col(AlertRecord.source_id) == source_id)
        ).one()
    )


def forget_webhook_ids_of_source(session: Session, source_id: int | None) -> None:
    """Delete (through the session) the webhook ids remembered for this source."""
    for row in session.exec(select(AlertWebhookId).where(col(AlertWebhookId.source_id) == source_id)):
        session.delete(row)


def move_last_post_at(session: Session, source_id: int, received_at: datetime, resolution: timedelta) -> None:
    """Set the source's ``last_post_at`` to ``received_at`` unless it is already within ``resolution``
    of it (one conditional UPDATE: concurrent posts never move it back)."""
    session.exec(
        update(AlertSource)
        .where(
            col(AlertSource.id) == source_id,
            sa.or_(
                col(AlertSource.last_post_at).is_(None),
                col(AlertSource.last_post_at) < received_at - resolution,
            ),
        )
        .values(last_post_at=received_at)
        .execution_options(synchronize_session=False)
    )


# ---- storing a post ------------------------------------------------------------------------------------


def remember_webhook_id(session: Session, remembered: AlertWebhookId) -> int | None:
    """Insert the webhook id of a post; None when this source sent that webhook id already."""
    return insert_or_nothing(session, remembered, ["source_id", "webhook_id"])


def insert_records(session: Session, rows: list[dict[str, Any]]) -> list[int]:
    """Insert a post's records, given as column values (the columns' defaults fill the rest), in
    one statement; their ids, in the order of ``rows``."""
    if not rows:
        return []
    table: Any = AlertRecord.__table__  # type: ignore[attr-defined]
    inserted = session.execute(sa.insert(table).returning(table.c.id, sort_by_parameter_order=True), rows)
    return [int(i) for i in inserted.scalars()]


def stored_alert_id(session: Session, source_id: int, external_id: str, resolved: bool) -> int | None:
    """The id of the alert stored under (source, external_id, resolved); there must be one."""
    return session.exec(
        select(SecurityAlert.id).where(
            col(SecurityAlert.source_id) == source_id,
            col(SecurityAlert.external_id) == external_id,
            col(SecurityAlert.resolved) == resolved,
        )
    ).one()


def count_repeat(session: Session, alert_id: int, at: datetime) -> None:
    """Count one more repeat of a stored alert, seen again at ``at``."""
    session.exec(
        update(SecurityAlert)
        .where(col(SecurityAlert.id) == alert_id)
        .values(repeats=SecurityAlert.repeats + 1, last_repeat_at=at)
        .execution_options(synchronize_session=False)
    )


def insert_alert(session: Session, values: dict[str, Any]) -> int | None:
    """Insert a new alert from its column values (the columns' defaults fill the rest: state
    ``received``, no repeats); its id, or None when one with the same (source, external_id,
    resolved) is stored already (before, or meanwhile by a concurrent post)."""
    table: Any = SecurityAlert.__table__  # type: ignore[attr-defined]
    return insert_values_or_nothing(session, table, values, ["source_id", "external_id", "resolved"])


# ---- processing --------------------------------------------------------------------------------------


def lock_received_alerts(session: Session, alert_ids: list[int]) -> list[tuple[SecurityAlert, str]]:
    """The alerts among ``alert_ids`` still ``received``, with their source's name, by id, locked
    (FOR UPDATE of the alert rows) and read afresh from the database."""
    return [
        (alert, name)
        for alert, name in session.exec(
            select(SecurityAlert, AlertSource.name)
            .join(AlertSource, col(AlertSource.id) == col(SecurityAlert.source_id))
            .where(
                col(SecurityAlert.id).in_(alert_ids),
                col(SecurityAlert.state) == AlertState.RECEIVED.value,
            )
            .order_by(col(SecurityAlert.id))
            .with_for_update(of=SecurityAlert)
            .execution_options(populate_existing=True)
        ).all()
    ]


def active_vms(session: Session) -> list[tuple[int, str | None, list[str], int | None]]:
    """Every active VM: (id, ip_address, ips, system_id)."""
    return [
        (int(i), ip, list(ips or []), system)
        for i, ip, ips, system in session.exec(
            select(VM.id, VM.ip_address, VM.ips, VM.system_id).where(
                col(VM.lifecycle) == Lifecycle.ACTIVE.value
            )
        ).all()
        if i is not None
    ]


def domains_of_systems(session: Session, system_ids: list[int]) -> list[tuple[int, list[str]]]:
    """The domains of these information systems: (id, domains)."""
    return [
        (int(sid), list(domains or []))
        for sid, domains in session.exec(
            select(InformationSystem.id, InformationSystem.domains).where(
                col(InformationSystem.id).in_(system_ids)
            )
        )
        if sid is not None
    ]


def get_vm(session: Session, vm_id: int) -> VM | None:
    """The VM of this id, if there is one."""
    return session.get(VM, vm_id)


def get_alert(session: Session, alert_id: int) -> SecurityAlert | None:
    """The stored alert of this id, if there is one."""
    return session.get(SecurityAlert, alert_id)


def open_incident_with_key(session: Session, open_key: str) -> Incident | None:
    """The open incident holding this ``open_key`` (a VM and a category), if there is one."""
    return session.exec(select(Incident).where(col(Incident.open_key) == open_key)).first()


# ---- reading -----------------------------------------------------------------------------------------


def alerts_page(
    session: Session,
    *,
    matched: bool | None,
    state: AlertState | None,
    source_id: int | None,
    vm_id: int | None,
    incident_id: int | None,
    limit: int,
    offset: int,
) -> tuple[list[tuple[SecurityAlert, str]], int]:
    """A page of the stored alerts these filters keep (newest first, with their source's name) and how
    many they keep in all. ``matched``: True, those with a VM; False, those found unmatched."""
    conditions: list[Any] = []
    if matched is True:
        conditions.append(col(SecurityAlert.vm_id).is_not(None))
    elif matched is False:
        conditions.append(col(SecurityAlert.state) == AlertState.UNMATCHED.value)
    if state is not None:
        conditions.append(col(SecurityAlert.state) == state.value)
    if source_id is not None:
        conditions.append(col(SecurityAlert.source_id) == source_id)
    if vm_id is not None:
        conditions.append(col(SecurityAlert.vm_id) == vm_id)
    if incident_id is not None:
        conditions.append(col(SecurityAlert.incident_id) == incident_id)
    rows = session.exec(
        select(SecurityAlert, AlertSource.name)
        .join(AlertSource, col(AlertSource.id) == col(SecurityAlert.source_id))
        .where(*conditions)
        .order_by(col(SecurityAlert.id).desc())
        .limit(limit)
        .offset(offset)
    ).all()
    total = int(session.exec(select(func.count()).select_from(SecurityAlert).where(*conditions)).one())
    return [(a, n) for a, n in rows], total


def alert_with_source(session: Session, alert_id: int) -> tuple[SecurityAlert, str] | None:
    """The stored alert of this id with its source's name, if there is one."""
    row = session.exec(
        select(SecurityAlert, AlertSource.name)
        .join(AlertSource, col(AlertSource.id) == col(SecurityAlert.source_id))
        .where(col(SecurityAlert.id) == alert_id)
    ).first()
    return (row[0], row[1]) if row is not None else None


def records_page(
    session: Session, *, failed: bool | None, source_id: int | None, limit: int, offset: int
) -> tuple[list[tuple[AlertRecord, str]], int]:
    """A page of the stored alert records (newest first, with their source's name; ``failed``: only
    those no parser understood, or only those understood) and how many there are in all."""
    conditions: list[Any] = []
    if failed is True:
        conditions.append(col(AlertRecord.error_code) != "")
    elif failed is False:
        conditions.append(col(AlertRecord.error_code) == "")
    if source_id is not None:
        conditions.append(col(AlertRecord.source_id) == source_id)
    rows = session.exec(
        select(AlertRecord, AlertSource.name)
        .join(AlertSource, col(AlertSource.id) == col(AlertRecord.source_id))
        .where(*conditions)
        .order_by(col(AlertRecord.id).desc())
        .limit(limit)
        .offset(offset)
    ).all()
    total = int(session.exec(select(func.count()).select_from(AlertRecord).where(*conditions)).one())
    return [(r, n) for r, n in rows], total


def record_with_source(session: Session, record_id: int) -> tuple[AlertRecord, str] | None:
    """The stored alert record of this id with its source's name, if there is one."""
    row = session.exec(
        select(AlertRecord, AlertSource.name)
        .join(AlertSource, col(AlertSource.id) == col(AlertRecord.source_id))
        .where(col(AlertRecord.id) == record_id)
    ).first()
    return (row[0], row[1]) if row is not None else None


# ---- housekeeping ------------------------------------------------------------------------------------


def delete_webhook_ids_before(session: Session, cutoff: datetime) -> int:
    """Delete the webhook ids received before ``cutoff``; how many were deleted."""
    result = session.exec(
        delete(AlertWebhookId)
        .where(col(AlertWebhookId.received_at) < cutoff)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)
