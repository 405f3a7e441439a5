"""Alert ingestion: a post is checked, every record stored, then the alerts processed by a task.

``POST /api/v1/alerts/{source}`` (:func:`receive_post`), in this order:

1. the source exists (404) and is active, and the sender's address is in its ranges (403);
2. the body is at most ``VMPORTAL_ALERT_MAX_BYTES`` (413; checked by the route while reading);
3. the signature (Standard Webhooks, 5-minute window) or the bearer token is right (401);
4. the body is records at all: JSON, an array of JSON, or JSON lines (400 otherwise);
5. a replayed ``webhook-id`` (remembered per source under a unique constraint) is answered 200
   ``{"duplicate": true}`` and changes nothing;
6. a Suricata (or generic) post's EVE events that are not alerts (``event_type`` flow, dns, http,
   tls, stats ...: a whole ``eve.json`` posted as it is) are dropped and counted by type in the answer
   (``dropped``, ``dropped_event_types``); the results keep each record's position in the body;
7. every record is stored as received (``alert_record``, size-limited) and each alert a parser read from
   it as a ``security_alert``; an alert already stored under the same ``external_id`` only counts a
   repeat. All of it commits **before** the answer: 202 with a result per record, or 422 when no record
   was understood (they are kept all the same, with the reason).

Matching, correlation and containment then run in the task ``vmportal.security.process_alerts``
(:func:`process_waiting`), queued through the outbox in the same transaction, so the answer does not wait
for them and a lost task is re-driven. The task is coalesced: a post while a run is pending sends no
message, and one run takes the alerts of every post waiting (see :mod:`vmportal.jobs.outbox`).

Refused posts (401, 403) are audited in a transaction of their own: forged alerts are worth seeing.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import Session

from vmportal.alerts import (
    AddressRole,
    Alert,
    AlertFormat,
    Inventory,
    ParseError,
    SourceKind,
    TaggedAddress,
    VMMatch,
    normalise_host,
    normalise_ip,
    parse_record,
    repository,
    sources,
    unmatched,
)
from vmportal.alerts.model import Category, Confidence, Severity
from vmportal.alerts.parsers import MAX_RAW_RECORD_BYTES, MAX_RECORDS, split_records
from vmportal.audit.service import Who, record
from vmportal.center import service as center
from vmportal.incidents import service as incidents
from vmportal.incidents.models import (
    AlertRecord,
    AlertSource,
    AlertState,
    AlertWebhookId,
    Incident,
    SecurityAlert,
)
from vmportal.jobs import outbox
from vmportal.kit import db, errors
from vmportal.vm.models import VM, Lifecycle

log = logging.getLogger(__name__)

# Task names (registered by vmportal.alerts.tasks; kept from before the move so queued tasks still run).
PROCESS_TASK = "vmportal.security.process_alerts"
PRUNE_TASK = "vmportal.security.prune_webhook_ids"

#: Alerts per processing task: a big batch is split so one task stays short.
PROCESS_CHUNK = 200


def source_who(source: AlertSource) -> Who:
    return Who(actor=f"alert-source:{source.name}"[:100], role="alert_source")


# ---- the post --------------------------------------------------------------------------------------


@dataclass
class RecordResult:
    index: int
    status: str  # accepted | duplicate | rejected
    record_id: int | None = None
    format: str | None = None
    alert_ids: list[int] = field(default_factory=list)
    duplicate_of: list[int] = field(default_factory=list)
    code: str | None = None
    reason: str | None = None
    error_field: str | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)  # alerts of the record that failed

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"index": self.index, "status": self.status, "record_id": self.record_id}
        if self.format:
            out["format"] = self.format
        if self.alert_ids:
            out["alert_ids"] = self.alert_ids
        if self.duplicate_of:
            out["duplicate_of"] = self.duplicate_of
        if self.status == "rejected":
            out.update(code=self.code, reason=self.reason, field=self.error_field)
        if self.errors:
            out["errors"] = self.errors
        return out


@dataclass
class PostResult:
    status: int
    body: dict[str, Any]


def receive_post(
    source_name: str,
    body: bytes,
    headers: Mapping[str, str],
    client_host: str | None,
    *,
    received_at: datetime | None = None,
) -> PostResult:
    """Check, store and queue one post (see the module docstring). Commits before returning."""
    received_at = received_at or db.utcnow()
    try:
        with db.transaction() as s:
            source = sources.source_by_name(s, source_name)
            sources.check_address(source, client_host)
            webhook_id = sources.authenticate(source, headers, body, now=received_at)
            result = _store(s, source, body, webhook_id, received_at)
            source_id, last_post_at = source.id, source.last_post_at
    except sources.SenderRefused as exc:
        _record_refusal(source_name, exc, client_host)
        raise
    if result.status != 200 and source_id is not None:  # stored (202, or 422 kept for inspection)
        _note_post(source_id, last_post_at, received_at)
    return result


#: ``alert_source.last_post_at`` is kept to within this much.
LAST_POST_RESOLUTION = timedelta(seconds=1)


def _note_post(source_id: int, last_post_at: datetime | None, received_at: datetime) -> None:
    """Move the source's ``last_post_at`` on, after the post committed and at most once a second.

    Not in the post's own transaction: updating the one row every post of a source shares would
    hold that row's lock until the commit, and a busy sender's posts would queue on it one after the
    other (the stored records are the exact account; this is the source list's "last heard of")."""
    if last_post_at is not None and received_at - last_post_at < LAST_POST_RESOLUTION:
        return
    try:
        _move_last_post_at(source_id, received_at)
    except Exception:  # the post is stored: its answer must say so whatever happens to this note
        log.exception("alert source %s: last_post_at not updated", source_id)


def _move_last_post_at(source_id: int, received_at: datetime) -> None:
    with db.transaction() as s:
        repository.move_last_post_at(s, source_id, received_at, LAST_POST_RESOLUTION)


def _record_refusal(source_name: str, exc: sources.SenderRefused, client_host: str | None) -> None:
    with db.transaction() as s:
        found = repository.source_named(s, source_name)
        record(
            s,
            Who(actor=f"alert-source:{source_name}"[:100], role="alert_source"),
            "security.alert.receive",
            "alert_source",
            found.id if found else source_name,
            after={"client": client_host, "reason": exc.reason},
            result="denied",
            detail=exc.message,
        )


def _split(body: bytes) -> list[tuple[Any, bytes]]:
    try:
        records = split_records(body)
    except ParseError as exc:
        raise errors.BadRequest(
            f"the body is not alert records: {exc.reason}",
            message_zh=f"请求体不是告警记录（JSON、JSON 数组或 JSON Lines）：{exc.reason}",
            reason=exc.code,
        ) from None
    if len(records) > MAX_RECORDS:
        raise errors.PayloadTooLarge(
            f"the body holds {len(records)} records; at most {MAX_RECORDS} are accepted in one post",
            message_zh=f"一次推送最多 {MAX_RECORDS} 条记录，本次为 {len(records)} 条",
            limit=MAX_RECORDS,
        )
    return records


#: Kinds whose posts may be a whole Suricata ``eve.json``: its flow, dns, http, tls, stats ... lines
#: are not alerts and are dropped (counted in the answer), only ``event_type: "alert"`` is stored.
_EVE_KINDS = frozenset({SourceKind.SURICATA, SourceKind.GENERIC})


def _alert_events_only(
    kind: SourceKind, records: list[tuple[Any, bytes]]
) -> tuple[list[tuple[int, Any, bytes]], dict[str, int]]:
    """The records to store, each with its position in the body, and the EVE events dropped, counted
    by ``event_type``. A Suricata sensor's eve.json is mostly flows and protocol logs: storing them
    would fill the alert records with what no one reads and hide the alerts among them."""
    kept: list[tuple[int, Any, bytes]] = []
    dropped: dict[str, int] = {}
    for index, (value, raw) in enumerate(records):
        event_type = value.get("event_type") if isinstance(value, dict) and kind in _EVE_KINDS else None
        if isinstance(event_type, str) and event_type != "alert":
            name = event_type[:40] or "(empty)"
            dropped[name] = dropped.get(name, 0) + 1
            continue
        kept.append((index, value, raw))
    return kept, dropped


def _raw_text(raw: bytes) -> tuple[str, bool]:
    truncated = len(raw) >= MAX_RAW_RECORD_BYTES
    return raw[:MAX_RAW_RECORD_BYTES].decode("utf-8", errors="replace"), truncated


def _store(
    s: Session, source: AlertSource, body: bytes, webhook_id: str | None, received_at: datetime
) -> PostResult:
    assert source.id is not None
    kind = SourceKind(source.kind)
    records, dropped = _alert_events_only(kind, _split(body))  # 400 / 413 before anything is written
    total = len(records) + sum(dropped.values())

    if webhook_id is not None:
        remembered = AlertWebhookId(
            source_id=source.id, webhook_id=webhook_id, received_at=received_at, record_count=total
        )
        if repository.remember_webhook_id(s, remembered) is None:
            return PostResult(
                200,
                {
                    "duplicate": True,
                    "webhook_id": webhook_id,
                    "message": f"webhook-id {webhook_id} was already received from this source: nothing was "
                    "stored again",
                    "message_zh": f"该 webhook-id（{webhook_id}）已接收过，未重复处理",
                },
            )

    results: list[RecordResult] = []
    rows: list[dict[str, Any]] = []  # the alert_record rows, as column values
    parsed: list[tuple[RecordResult, list[Alert]]] = []
    for index, value, raw in records:
        raw_text, truncated = _raw_text(raw)
        row: dict[str, Any] = {
            "source_id": source.id,
            "received_at": received_at,
            "webhook_id": webhook_id or "",
            "position": index,
            "raw": raw_text,
            "raw_truncated": truncated,
            # Every row names every column: the rows are inserted in one executemany.
            "format": "",
            "alert_count": 0,
            "error_code": "",
            "error": "",
            "error_field": "",
        }
        result = RecordResult(index=index, status="accepted")
        alerts: list[Alert] = []
        if isinstance(value, ParseError):
            failure: ParseError | None = value
        else:
            failure = None
            try:
                for item in parse_record(kind, value, source=source.name, received_at=received_at):
                    if isinstance(item, ParseError):
                        result.errors.append({"code": item.code, "reason": item.reason, "field": item.field})
                    else:
                        alerts.append(item)
            except ParseError as exc:
                failure = exc
            if failure is None and not alerts:
                failure = ParseError(
                    "; ".join(e["reason"] for e in result.errors) or "the record holds no alert", field=None
                )
        if failure is not None:
            row["error_code"] = failure.code
            row["error"] = failure.reason[:2000]
            row["error_field"] = (failure.field or "")[:200]
            result.status, result.code, result.reason = "rejected", failure.code, failure.reason
            result.error_field = failure.field
            result.errors = []
        else:
            row["format"] = result.format = alerts[0].format.value
            row["alert_count"] = len(alerts)
        rows.append(row)
        results.append(result)
        parsed.append((result, alerts))
    # One core INSERT for the post's records: they are not needed as ORM objects, and building
    # them and flushing them through the unit of work cost more than the statement.
    for result, record_id in zip(results, repository.insert_records(s, rows), strict=True):
        result.record_id = record_id

    new_ids = _store_alerts(s, source, parsed)
    for start in range(0, len(new_ids), PROCESS_CHUNK):
        outbox.enqueue(s, PROCESS_TASK, alert_ids=new_ids[start : start + PROCESS_CHUNK])

    accepted = sum(1 for r in results if r.status == "accepted")
    duplicates = sum(1 for r in results if r.status == "duplicate")
    rejected = sum(1 for r in results if r.status == "rejected")
    record(
        s,
        source_who(source),
        "security.alert.receive",
        "alert_source",
        source.id,
        after={
            "webhook_id": webhook_id,
            "records": total,
            "accepted": accepted,
            "duplicates": duplicates,
            "rejected": rejected,
            "dropped": sum(dropped.values()),
            "alert_ids": new_ids[:100],
        },
        result="ok" if accepted or duplicates else "rejected",
    )
    summary = {
        "source": source.name,
        "received_at": received_at.isoformat(),
        "records": total,
        "accepted": accepted,
        "duplicates": duplicates,
        "rejected": rejected,
        "dropped": sum(dropped.values()),
        "dropped_event_types": dict(sorted(dropped.items())),
        "results": [r.as_dict() for r in results],
    }
    if rejected and not accepted and not duplicates:
        reasons = "; ".join(f"record {r.index}: {r.reason}" for r in results[:5])
        return PostResult(
            422,
            {
                "error": {
                    "code": "not_understood",
                    "message": f"no record was understood (kept for inspection): {reasons}",
                    "message_zh": f"没有可识别的告警记录（原始记录已保存，供人工查看）：{reasons}",
                    "kept": True,
                    **summary,
                }
            },
        )
    return PostResult(202, summary)


def _store_alerts(
    s: Session, source: AlertSource, parsed: Sequence[tuple[RecordResult, list[Alert]]]
) -> list[int]:
    """Insert the new alerts; an alert already stored (same source, external_id, resolved) counts a
    repeat on the stored row instead. Returns the new alerts' ids, in record order.

    Each alert is inserted straight away (``ON CONFLICT DO NOTHING``), and only one that clashes
    with a stored alert is looked up: a new alert, which almost every post carries, costs one
    statement instead of a look-up of every key followed by the insert."""
    assert source.id is not None
    known: dict[tuple[str, bool], int] = {}  # keys stored, by this post or before it
    new_ids: list[int] = []
    for result, alerts in parsed:
        for alert in alerts:
            key = (alert.external_id, alert.resolved)
            stored = known.get(key)
            if stored is None:
                inserted = _insert_alert(s, source, result.record_id, alert)
                if inserted is not None:
                    known[key] = inserted
                    result.alert_ids.append(inserted)
                    new_ids.append(inserted)
                    continue
                # Stored before (or meanwhile, by a concurrent post): a repeat of that alert.
                found = repository.stored_alert_id(s, source.id, alert.external_id[:512], alert.resolved)
                stored = known[key] = found or 0
            _count_repeat(s, stored, alert.received_at)
            result.duplicate_of.append(stored)
        if result.status == "accepted" and not result.alert_ids and result.duplicate_of:
            result.status = "duplicate"
    return new_ids


def _count_repeat(s: Session, alert_id: int, at: datetime) -> None:
    repository.count_repeat(s, alert_id, at)


def _insert_alert(s: Session, source: AlertSource, record_id: int | None, alert: Alert) -> int | None:
    assert source.id is not None and record_id is not None
    # Column values, not a SecurityAlert instance: the row is not needed as an ORM object here, and
    # building one (with its attribute events) cost as much as the statement.
    return repository.insert_alert(
        s,
        {
            "record_id": record_id,
            "source_id": source.id,
            "received_at": alert.received_at,
            "format": alert.format.value,
            "category": alert.category.value,
            "severity": alert.severity.value,
            "confidence": alert.confidence.value,
            "external_id": alert.external_id[:512],
            "window_key": alert.window_key[:512] if alert.window_key else None,
            "resolved": alert.resolved,
            "title": alert.title[:500],
            "addresses": [{"ip": a.ip, "role": a.role.value, "field": a.field} for a in alert.addresses],
            "subject_roles": sorted(r.value for r in alert.subject_roles),
            "target_host": alert.target_host[:253] if alert.target_host else None,
            "target_host_role": alert.target_host_role.value if alert.target_host_role else None,
            "evidence": alert.evidence,
        },
    )


# ---- processing: matching and correlation -------------------------------------------------------------


def to_alert(row: SecurityAlert, source_name: str) -> Alert:
    """The stored alert back in the internal form the matcher reads."""
    return Alert(
        received_at=row.received_at,
        source=source_name,
        format=AlertFormat(row.format),
        category=Category(row.category),
        severity=Severity(row.severity),
        confidence=Confidence(row.confidence),
        addresses=tuple(
            TaggedAddress(a["ip"], AddressRole(a["role"]), a.get("field", "")) for a in row.addresses
        ),
        subject_roles=frozenset(AddressRole(r) for r in row.subject_roles),
        target_host=row.target_host,
        target_host_role=AddressRole(row.target_host_role) if row.target_host_role else None,
        external_id=row.external_id,
        resolved=row.resolved,
        title=row.title,
        evidence=dict(row.evidence or {}),
        window_key=row.window_key,
    )


@functools.lru_cache(maxsize=16384)
def _is_loopback(ip: str) -> bool:
    # Asked of every VM's every address for each processing task: the same strings over and over.
    return ipaddress.ip_address(ip).is_loopback


def build_inventory(session: Session, alerts: Sequence[Alert] | None = None) -> Inventory[int]:
    """Active VMs' addresses (inventory IPs and the delivered address) and the domains of their
    information systems. An address or domain claimed by two VMs is left out: guessing would blame
    the wrong unit, so such alerts wait for a human.

    With ``alerts``, only what those alerts could match is read: the VMs holding one of their
    addresses and the VMs of systems holding one of their hostnames (indexed look-ups; every holder
    of each such key, so ambiguity is judged as over the whole inventory). Matching a batch then
    costs the same with 20,000 VMs as with 100. Without, the whole inventory (the scan targets)."""
    addresses: dict[str, int | None] = {}
    hosts: dict[str, int | None] = {}

    def claim(book: dict[str, int | None], key: str | None, vm_id: int) -> None:
        if key is None:
            return
        if key in book and book[key] != vm_id:
            book[key] = None  # ambiguous
        else:
            book[key] = vm_id

    if alerts is None:
        vms = repository.active_vms(session)
        systems: list[tuple[int, list[str]]] | None = None
    else:
        wanted_ips = sorted({a.ip for alert in alerts for a in alert.addresses})
        wanted_hosts = sorted(
            {h for alert in alerts if alert.target_host and (h := normalise_host(alert.target_host))}
        )
        vms = repository.vms_holding(session, wanted_ips)
        systems = repository.systems_with_domains(session, wanted_hosts)
        known = {vm_id for vm_id, *_ in vms}
        vms += [
            row
            for row in repository.active_vms_of_systems(session, [sid for sid, _ in systems])
            if row[0] not in known
        ]
    by_system: dict[int, list[int]] = {}
    for vm_id, ip_address, ips, system_id in vms:
        for value in [ip_address, *ips]:
            ip = normalise_ip(value)
            if ip is not None and not _is_loopback(ip):
                claim(addresses, ip, vm_id)
        if system_id is not None:
            by_system.setdefault(system_id, []).append(vm_id)
    if systems is None and by_system:
        systems = repository.domains_of_systems(session, list(by_system))
    for system_id, domains in systems or []:
        members = by_system.get(system_id, [])
        for domain in domains:
            host = normalise_host(domain)
            for vm_id in set(members):
                claim(hosts, host, vm_id)
    return Inventory(
        {k: v for k, v in addresses.items() if v is not None},
        {k: v for k, v in hosts.items() if v is not None},
    )


def process_alerts(alert_ids: list[int]) -> str:
    """Match each of ``alert_ids`` still received to a VM and gather it into its incident (a direct
    call; the task runs :func:`process_waiting`). Idempotent: only alerts still ``received`` are
    processed, under their row locks (a second call waits for the first, then finds nothing)."""
    with db.transaction() as s:
        outbox.complete_in(s)  # the task's outbox row, completed with this transaction
        counts = _process(s, repository.lock_received_alerts(s, alert_ids))
    return _summary(counts)


#: A coalesced run stops taking batches after this long, leaving the rest to a run it sends (the
#: task's time limit must never cut a run short: its batch would roll back and wait for the re-drive).
RUN_BUDGET_SECONDS = 20.0


def process_waiting() -> str:
    """The task body of ``vmportal.security.process_alerts`` (a coalesced task, see
    :mod:`vmportal.jobs.outbox`): whatever post's row it was sent for, it processes the alerts of
    every processing row still waiting, oldest first, a batch of at most :data:`PROCESS_CHUNK`
    alerts per transaction, each batch's rows completed with its work, until none is left.

    Rows another run holds are skipped (never waited for): that run completes them, or, should it
    die, its rollback leaves them waiting for the next run or the re-drive. A row taken twice (a
    second delivery after the first committed) finds its alerts no longer received: nothing done."""
    outbox.completion_handled()  # this run's own row is completed with its batch, by whichever run
    outbox.run_starting(PROCESS_TASK)  # from now on a new post sends a run of its own
    counts = {"matched": 0, "unmatched": 0}
    deadline = time.monotonic() + RUN_BUDGET_SECONDS
    while True:
        with db.transaction() as s:
            taken = outbox.take_waiting(s, PROCESS_TASK, PROCESS_CHUNK)
            if not taken:
                break
            batch: list[int] = []
            done: list[int] = []
            for outbox_id, arguments in taken:
                ids = [int(i) for i in arguments.get("alert_ids", [])]
                if done and len(batch) + len(ids) > PROCESS_CHUNK:
                    break  # the rest of the rows taken wait for the next batch (released at commit)
                batch += ids
                done.append(outbox_id)
            found = _process(s, repository.lock_received_alerts(s, sorted(set(batch))))
            outbox.complete_taken(s, done)
        for key in counts:
            counts[key] += found[key]
        if time.monotonic() >= deadline:
            running = outbox.current_row()
            if running is not None:  # rows may be left: a run of their own (unless one is pending)
                outbox.send_again(running, PROCESS_TASK, {"alert_ids": []})
            break
    return _summary(counts)


def _summary(counts: dict[str, int]) -> str:
    if not counts["matched"] and not counts["unmatched"]:
        return "nothing to do"
    return f"{counts['matched']} matched, {counts['unmatched']} unmatched"


def _process(s: Session, rows: list[tuple[SecurityAlert, str]]) -> dict[str, int]:
    """Match locked received alerts and gather them into incidents, in ``s``'s transaction."""
    counts = {"matched": 0, "unmatched": 0}
    if not rows:
        return counts
    parsed = [(row, source_name, to_alert(row, source_name)) for row, source_name in rows]
    inventory = build_inventory(s, [alert for _, _, alert in parsed])
    mail_mode: str | None = None  # the center's choice, read once and only when needed
    for row, source_name, alert in parsed:
        matches = inventory.match_all(alert)
        found = matches[0] if matches else None
        if found is None:
            row.state = AlertState.UNMATCHED.value
            row.processed_at = db.utcnow()
            s.add(row)
            counts["unmatched"] += 1
            mail_mode = mail_mode or center.unmatched_alert_mail(s)
            if mail_mode == "each":  # the digest mode is beat's (vmportal.alerts.unmatched)
                s.flush()
                unmatched.notify_each(s, row, source_name)
            continue
        vm = repository.get_vm(s, found.vm)
        assert vm is not None
        who = Who(actor=f"alert-source:{source_name}"[:100], role="alert_source")
        attach(s, row, vm, found, who=who)
        if found.accused and not row.resolved:
            for other in matches[1:]:
                if not other.accused:
                    _open_victim_incident(s, row, vm, other, who)
        counts["matched"] += 1
    return counts


def _match_dict(found: VMMatch[int] | None, *, manual_by: str | None = None) -> dict[str, Any]:
    if found is None:
        return {"via": "manual", "by": manual_by, "accused": True}
    return {
        "via": found.via,
        "value": found.value,
        "role": found.role.value if found.role else None,
        "field": found.field,
        "accused": found.accused,
    }


_ROLE_ZH = {
    "src": "源地址",
    "dst": "目的地址",
    "agent": "主机代理地址",
    "host": "主机地址",
    "target": "目标地址",
}


def attach(
    s: Session, row: SecurityAlert, vm: VM, found: VMMatch[int] | None, *, who: Who
) -> Incident | None:
    """Attach a stored alert to its VM and to the VM's incident for the alert's category (opening it and
    applying the containment policy as needed). ``found`` None: a human assigned it (accused)."""
    assert vm.id is not None

    def matched(incident: Incident | None, state: AlertState = AlertState.MATCHED) -> None:
        # Written once the incident is known: set before the incident's statements, the alert's
        # row would be flushed by their autoflush and then updated a second time for its incident.
        row.vm_id = vm.id
        row.match = _match_dict(found, manual_by=who.actor if found is None else None)
        row.processed_at = db.utcnow()
        row.state = state.value
        row.incident_id = incident.id if incident is not None else row.incident_id
        s.add(row)

    if row.resolved:
        # "Resolved" never releases a VM: note it on the open incident, if there is one.
        open_incident = repository.open_incident_with_key(s, incidents.incident_key(vm.id, row.category))
        matched(open_incident, AlertState.MATCHED if open_incident is not None else AlertState.NOTED)
        return open_incident
    hold: tuple[str, str] | None = None
    if found is not None and not found.accused:
        role = found.role.value if found.role else "host"
        hold = (
            f"The VM appears in the alert as its {role} ({found.field}), not as the side the alert "
            "accuses: it looks like the victim, so it is not contained automatically and a human decides.",
            f"告警中该虚拟机为{_ROLE_ZH.get(role, role)}（{found.field}），并非告警指向的攻击方或受控方，"
            "可能是受害者：不自动处置，由信息中心人工研判。",
        )
    opening = incidents.open_incident(
        s,
        who,
        vm=vm,
        category=row.category,
        severity=row.severity,
        confidence=row.confidence,
        title=row.title or f"{row.format} {row.category}",
        seen_at=row.received_at,
        hold_reason=hold,
    )
    matched(opening.incident)
    return opening.incident


def _open_victim_incident(
    s: Session, row: SecurityAlert, attacker: VM, found: VMMatch[int], who: Who
) -> None:
    """The victim of an internal attack (a VM of ours named, not accused, by an alert that accuses
    another VM of ours) gets an incident of its own, for humans only: never contained, its unit
    and the center mailed (the notify-only mail), so the unit checks what the attacker reached.
    The alert row stays the attacker's; the victim's incident names it on its timeline."""
    victim = repository.get_vm(s, found.vm)
    if victim is None or victim.id == attacker.id:
        return
    role = found.role.value if found.role else "host"
    role_zh = _ROLE_ZH.get(role, role)
    incidents.open_incident(
        s,
        who,
        vm=victim,
        category=row.category,
        severity=row.severity,
        confidence=row.confidence,
        title=f"{row.title or row.format + ' ' + row.category} (victim of VM {attacker.name})"[:500],
        seen_at=row.received_at,
        hold_reason=(
            f"The VM is the {role} ({found.field}) of alert #{row.id}, which accuses VM {attacker.name} "
            f"({attacker.ip_address or 'no address'}) of the campus: this VM looks like the victim of an "
            "internal attack. It is not contained; its unit should check what the attacker reached.",
            f"该虚拟机为告警 #{row.id} 中的{role_zh}（{found.field}），告警指向的是校内虚拟机 {attacker.name}"
            f"（{attacker.ip_address or '无地址'}）：该虚拟机可能是校内攻击的受害者，不作处置，"
            "请所属单位检查攻击方可能造成的影响。",
        ),
    )


def assign(session: Session, who: Who, alert_id: int, vm_id: int) -> SecurityAlert:
    """A center user matches an alert no VM claimed: it joins that VM's incident like a matched one."""
    row = repository.get_alert(session, alert_id)
    if row is None:
        raise errors.NotFound("alert", alert_id)
    if row.state != AlertState.UNMATCHED:
        raise errors.StateConflict(
            "alert",
            row.state,
            "assign",
            message=f"alert {alert_id} is {row.state}: only an unmatched alert can be assigned to a VM",
        )
    vm = repository.get_vm(session, vm_id)
    if vm is None:
        raise errors.InvalidField(
            "vm_id", "exists", f"VM {vm_id} does not exist", message_zh=f"虚拟机 {vm_id} 不存在"
        )
    if vm.lifecycle != Lifecycle.ACTIVE:
        raise errors.InvalidField(
            "vm_id",
            "active",
            f"VM {vm_id} is {vm.lifecycle}",
            message_zh=f"虚拟机 {vm_id} 的状态为 {vm.lifecycle}",
        )
    row.assigned_by = who.actor_id
    found = attach(session, row, vm, None, who=who)
    record(
        session,
        who,
        "security.alert.assign",
        "alert",
        alert_id,
        before={"state": AlertState.UNMATCHED.value},
        after={"state": row.state, "vm_id": vm_id, "incident_id": found.id if found else None},
        unit_id=vm.unit_id,
    )
    return row


# ---- reading ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AlertFilters:
    matched: bool | None = None
    state: AlertState | None = None
    source_id: int | None = None
    vm_id: int | None = None
    incident_id: int | None = None
    limit: int = 50
    offset: int = 0


def list_alerts(session: Session, f: AlertFilters) -> tuple[list[tuple[SecurityAlert, str]], int]:
    return repository.alerts_page(
        session,
        matched=f.matched,
        state=f.state,
        source_id=f.source_id,
        vm_id=f.vm_id,
        incident_id=f.incident_id,
        limit=f.limit,
        offset=f.offset,
    )


def get_alert(session: Session, alert_id: int) -> tuple[SecurityAlert, str]:
    row = repository.alert_with_source(session, alert_id)
    if row is None:
        raise errors.NotFound("alert", alert_id)
    return row


def list_records(
    session: Session, *, failed: bool | None, source_id: int | None, limit: int, offset: int
) -> tuple[list[tuple[AlertRecord, str]], int]:
    return repository.records_page(session, failed=failed, source_id=source_id, limit=limit, offset=offset)


def get_record(session: Session, record_id: int) -> tuple[AlertRecord, str]:
    row = repository.record_with_source(session, record_id)
    if row is None:
        raise errors.NotFound("alert record", record_id)
    return row


# ---- housekeeping -----------------------------------------------------------------------------------

#: How long webhook ids are remembered. A post older than the signature window (5 minutes) is refused
#: on its timestamp anyway; a day leaves ample room for clock skew and for inspecting a replay.
WEBHOOK_ID_MEMORY = timedelta(days=1)


def prune_webhook_ids(older_than: timedelta = WEBHOOK_ID_MEMORY) -> int:
    """Forget webhook ids past any replay window (the task ``vmportal.security.prune_webhook_ids``)."""
    cutoff = db.utcnow() - older_than
    with db.transaction() as s:
        return repository.delete_webhook_ids_before(s, cutoff)
